"""What every benchmark needs: the tests' weight recipes on the path, recipe weights as a file, the reference venvs.

The reference implementations run in venvs of their own (never dependencies of
this project): the official MobileSAM (``pip install torch==2.14.1
torchvision==0.29.1 mobilesam-mirror timm``) and micro-sam (``pip install
torch==2.14.1 torchvision==0.29.1 micro-sam==1.8.14``). Their Python is found
from ``--official-python``/``--microsam-python``, the environment variables
``OFFICIAL_PYTHON``/``MICROSAM_PYTHON``, or the default folders beside the checkout
(``../venv-official``, ``../venv-microsam``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REFERENCE_PYTHONS = {
    "official": ("OFFICIAL_PYTHON", ROOT.parent / "venv-official" / "bin" / "python"),
    "microsam": ("MICROSAM_PYTHON", ROOT.parent / "venv-microsam" / "bin" / "python"),
}


def tests_on_path() -> None:
    """Make ``tests/`` importable (the weight recipes in ``recipe.py``, the GUI helpers in ``support/``), and
    ``src/`` where the package is not installed (a bare GPU machine with only this checkout)."""
    import importlib.util

    for folder in ("tests",) if importlib.util.find_spec("napari_mobilesam") else ("tests", "src"):
        if str(ROOT / folder) not in sys.path:
            sys.path.insert(0, str(ROOT / folder))


def recipe_model(device="cpu"):
    """MobileSAM with the seed-0 recipe weights (``mobile_sam.pt``'s architecture and speed), eval mode, on ``device``."""
    tests_on_path()
    from napari_mobilesam.model import build_mobile_sam
    from recipe import recipe_state_dict

    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0), strict=True)
    return model.eval().to(device)


def recipe_weights_file(folder, seed: int = 0) -> Path:
    """The seeded recipe weights written as a checkpoint file, as users have weights."""
    tests_on_path()
    from recipe import save_recipe_weights

    return save_recipe_weights(folder, seed)


def reference_python(which: str, given: str | None = None) -> str:
    """The Python of a reference venv (``"official"`` or ``"microsam"``): ``given``, the environment, or the default."""
    variable, default = REFERENCE_PYTHONS[which]
    return given or os.environ.get(variable) or str(default)


class WorkerProcess:
    """An implementation loaded once in a process of its own (its venv), answering one JSON line per command.

    The worker scripts (``engine_worker.py``, ``instance_worker.py``) print one
    JSON line when loaded (``info``), then answer each command line with one
    JSON line until ``quit``. Two of them kept side by side take turns call by
    call, so the machine's slow spells hit both alike.
    """

    def __init__(self, cmd: list[str]) -> None:
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker exited with {self.process.wait()}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        """Send one command line; its JSON answer."""
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def time(self, name: str, repeats: int) -> list[float]:
        """Seconds of ``repeats`` calls of job ``name``."""
        return self.ask(f"{name} {repeats}")["times"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait()
