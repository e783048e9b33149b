"""What every benchmark needs: the tests' weight recipes on the path, recipe weights as a file, the reference venvs.

The reference implementations run in venvs of their own (never dependencies of
this project): the official MobileSAM (``pip install torch==2.14.1
torchvision==0.29.1 mobilesam-mirror timm``) and micro-sam (``pip install
torch==2.14.1 torchvision==0.29.1 micro-sam==1.8.14``). Their Python is found
from ``--official-python``/``--microsam-python``, the environment variables
``OFFICIAL_PYTHON``/``MICROSAM_PYTHON``, or the default folders below.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REFERENCE_PYTHONS = {
    "official": ("OFFICIAL_PYTHON", ROOT.parent / "venv_official" / "bin" / "python"),
    "microsam": ("MICROSAM_PYTHON", Path("/work/venv-microsam/bin/python")),
}


def tests_on_path() -> None:
    """Make ``tests/`` importable (the weight recipes in ``recipe.py``, the GUI helpers in ``support/``)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def recipe_weights_file(folder, seed: int = 0) -> Path:
    """The seeded recipe weights written as a checkpoint file, as users have weights."""
    tests_on_path()
    from recipe import save_recipe_weights

    return save_recipe_weights(folder, seed)


def reference_python(which: str, given: str | None = None) -> str:
    """The Python of a reference venv (``"official"`` or ``"microsam"``): ``given``, the environment, or the default."""
    variable, default = REFERENCE_PYTHONS[which]
    return given or os.environ.get(variable) or str(default)
