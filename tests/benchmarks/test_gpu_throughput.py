"""The GPU benchmark script's parts, run on the CPU with tiny sizes (no GPU in CI): it must not fail unattended."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def script(monkeypatch_module):
    monkeypatch_module.syspath_prepend(str(SCRIPT.parent))  # the script imports benchmarks/common.py
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_section_runs_and_reports(script):
    out = script.run("cpu", slices=2, batches=(1, 2), compile_model=False, budget=1e9, precisions=("float32",))
    assert [run["batch"] for run in out["encode"]["float32"]["runs"]] == [1, 2]
    assert out["encode"]["float32"]["best"]["slices_per_s"] > 0
    assert out["embed_many"]["precision"] == "float32" and out["embed_many"]["batch"] == 1
    assert out["click"]["click_ms"] > 0 and out["click"]["decode_ms"] > 0
    assert "graph_decode_ms" not in out["click"]  # CUDA graphs only on CUDA
    assert "compile" not in out


def test_a_failing_section_is_recorded_and_the_budget_stops_the_rest(script, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(script, "section_encode", broken)
    out = script.run("cpu", slices=1, batches=(1,), compile_model=False, budget=0, precisions=("float32",))
    assert out["encode"] == {"skipped": "over the 0 s budget"}
    assert out["click"] == {"skipped": "over the 0 s budget"}
    out = script.run("cpu", slices=1, batches=(1,), compile_model=True, budget=1e9, precisions=("float32",))
    assert out["encode"]["error"] == "RuntimeError: no kernel"
    assert "compile" not in out  # nothing to compile without an eager result


def test_relative_error_of_float32_is_zero(script):
    model = script.recipe_model("cpu")
    inputs = script.preprocessed(model, 2, "cpu")
    assert script.relative_error(model.image_encoder, inputs, torch.float32) == 0.0
