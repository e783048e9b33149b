"""Running the napari-mobilesam command as users run it: a subprocess, generated inputs, recipe weights.

Kept lean for a 2-core machine: 64x64 slices, 2x2 prompt grids, one torch
thread, and one embedding cache shared by a test module (each slice is encoded once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

FAST = ["--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--threads", "1", "-q"]


def command() -> list[str]:
    """The installed console script when there is one, else the same ``main`` through ``python -m``."""
    script = Path(sys.executable).parent / "napari-mobilesam"
    return [str(script)] if script.exists() else [sys.executable, "-m", "napari_mobilesam"]


def blob_stack(shape, seed=0) -> np.ndarray:
    """Bright discs that drift a little from slice to slice, uint16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    stack = rng.normal(200, 20, shape)
    centres = rng.uniform(12, min(shape[-2:]) - 12, (4, 2))
    for index in np.ndindex(*shape[:-2]):
        drift = sum(index)
        for cy, cx in centres:
            stack[index][(yy - cy - drift) ** 2 + (xx - cx) ** 2 < 64] += 1500
    return np.clip(stack, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Weights, inputs and a private cache folder shared by the module's runs."""
    import torch

    from recipe import recipe_state_dict

    root = tmp_path_factory.mktemp("cli")
    torch.save(recipe_state_dict(0), root / "recipe.pt")
    tifffile.imwrite(root / "stack.tif", blob_stack((3, 64, 64)), photometric="minisblack")
    tifffile.imwrite(root / "image.tif", blob_stack((64, 64), seed=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAPARI_MOBILESAM_")}
    env.update(NAPARI_MOBILESAM_CACHE=str(root / "cache"), PYTHONWARNINGS="ignore")
    return {"root": root, "weights": root / "recipe.pt", "env": env}


def run(work, *args, check=True, env=None, cwd=None) -> subprocess.CompletedProcess:
    cmd = [*command(), *map(str, args)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env or work["env"], cwd=cwd or work["root"], timeout=300
    )
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} exited {out.returncode}:\n{out.stderr}")
    return out


def segment(work, source, output, *extra, check=True):
    return run(work, "segment", source, "-o", output, "--weights", work["weights"], *FAST, *extra, check=check)


def assert_one_line_error(out, *fragments, notes=()):
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith(notes)]
    assert out.returncode == 1, out.stderr
    assert len(lines) == 1 and lines[0].startswith("napari-mobilesam: error: "), out.stderr
    assert "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def leftovers(folder: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)
