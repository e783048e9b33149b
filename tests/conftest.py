"""Shared fixtures (the recipe-weights model, built once per session) and the test markers.

Markers (see ``pyproject.toml``), set here by where a test lives so a developer
can run the core alone: ``pytest -m "not gui and not dask and not slow"``.

- ``gui``: a real napari window (``tests/_qt``);
- ``dask``: a dask.distributed cluster (``tests/runners/test_dask_cluster.py``);
- ``parity``: against the official implementations' outputs (``tests/model/test_parity.py``
  and tests marked in their modules);
- ``slow``: runs the command line as a subprocess, whole pipelines at full size, or the benchmark
  scripts' parts (``tests/benchmarks``);
- ``gpu``: a CUDA GPU against the CPU (``tests/gpu``, skipped without one).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Fixtures shared across folders: the command line's work folder (``work``), the GUI's display and session,
# the download tests' unreachable URL (``closed_port_url``).
pytest_plugins = ["support.cli_runs", "support.gui", "support.file_server"]

_TESTS = Path(__file__).parent
_BY_PATH = {
    "_qt": "gui",
    "runners/test_dask_cluster.py": "dask",
    "model/test_parity.py": "parity",
    "cli": "slow",
    "benchmarks": "slow",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        relative = Path(item.path).relative_to(_TESTS).as_posix()
        for prefix, marker in _BY_PATH.items():
            if relative == prefix or relative.startswith(prefix + "/"):
                item.add_marker(marker)


@pytest.fixture(scope="session")
def recipe_model():
    """MobileSAM with the seed-0 recipe weights of the reference fixtures, eval mode, CPU."""
    from napari_mobilesam.model import build_mobile_sam
    from recipe import recipe_state_dict

    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0), strict=True)
    return model


@pytest.fixture
def predictor(recipe_model):
    from napari_mobilesam import Predictor

    return Predictor(recipe_model)
