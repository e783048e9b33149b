"""Bad inputs to the command line, as a new user makes them: one clear line, exit 1, and nothing left on disk.

Each case is a row of docs/errors.md. Kept lean for a 2-core machine: most runs
fail before the model is loaded; those that get further use 64x64 slices.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from support.cli_runs import FAST, assert_one_line_error, blob_stack, leftovers, run


@pytest.fixture(scope="module")
def inputs(work):
    """A 2-slice stack beside the module's weights; each test runs in a folder of its own."""
    tifffile.imwrite(work["root"] / "two.tif", blob_stack((2, 64, 64), seed=11), photometric="minisblack")
    return work


def fails_cleanly(work, folder, *args, fragments=(), notes=(), env=None):
    """Run ``args`` in ``folder``: one error line holding ``fragments``, and ``folder`` as it was."""
    folder.mkdir(exist_ok=True)
    before = leftovers(folder)
    out = run(work, *args, check=False, env=env, cwd=folder)
    assert_one_line_error(out, *fragments, notes=notes)
    assert leftovers(folder) == before
    return out


# -- settings: one rule for the API and the command line -----------------------------------


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--pred-iou-thresh", "2", "--pred-iou-thresh must be in [0, 1], got 2.0"),
        ("--stability-score-thresh", "-4", "--stability-score-thresh must be in [0, 1]"),
        ("--link-iou", "-1", "--link-iou must be in [0, 1], got -1.0"),
        ("--points-per-side", "0", "--points-per-side must be a whole number from 1 to 1024"),
        ("--stability-score-offset", "-1", "--stability-score-offset must be >= 0"),
    ],
)
def test_settings_out_of_range(inputs, tmp_path, option, value, fragment):
    fails_cleanly(
        inputs, tmp_path, "segment", inputs["root"] / "two.tif", "-o", "out.tif", "--weights", inputs["weights"],
        *FAST, option, value, fragments=[fragment],
    )


def test_help_shows_every_default(inputs):
    text = run(inputs, "segment", "--help").stdout
    for fragment in ("default: 32", "default: 0.88", "default: 0.95", "default: 0.7", "default: 0.5", "default: grid"):
        assert fragment in " ".join(text.split()), fragment


# -- nothing is created before everything is checked -------------------------------------------


@pytest.fixture(scope="module")
def no_distributed(tmp_path_factory):
    """A PYTHONPATH on which ``import distributed`` fails, as where dask is installed without it."""
    folder = tmp_path_factory.mktemp("no-distributed")
    (folder / "distributed").mkdir()
    (folder / "distributed" / "__init__.py").write_text("raise ImportError('dask.distributed is not installed')\n")
    return os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


@pytest.mark.parametrize(
    ("case", "extra", "fragments"),
    [
        ("weights that do not load", ["--weights", "garbage.pt"], ["garbage.pt could not be loaded as plain weights"]),
        ("contrast limits", ["--contrast-limits", "5", "1"], ["--contrast-limits must be LOW HIGH", "got 5 1"]),
        ("device from the environment", [], ["NAPARI_MOBILESAM_DEVICE='cuda'", "set it to 'cpu'"]),
        ("--workers without dask.distributed", ["--workers", "2"], ["needs dask.distributed", "[distributed]"]),
    ],
)
def test_failures_leave_no_work_folder(inputs, tmp_path, no_distributed, case, extra, fragments):
    import torch

    env = dict(inputs["env"])
    if case == "device from the environment":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        env["NAPARI_MOBILESAM_DEVICE"] = "cuda"
    if case == "--workers without dask.distributed":
        env["PYTHONPATH"] = str(no_distributed)
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 100)
    weights = [] if "--weights" in extra else ["--weights", inputs["weights"]]
    fails_cleanly(
        inputs, tmp_path, "segment", inputs["root"] / "two.tif", "-o", "out.tif", *weights, *FAST, *extra,
        fragments=fragments, env=env,
    )


# -- extreme shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1)])
def test_a_line_scan_is_segmented(inputs, tmp_path, shape):
    line = np.random.default_rng(2).normal(200, 20, shape) + 1500 * (np.arange(5000).reshape(shape) % 500 < 100)
    tifffile.imwrite(tmp_path / "line.tif", line.astype(np.uint16))
    out = run(inputs, "segment", "line.tif", "-o", "labels.tif", "--weights", inputs["weights"], *FAST, cwd=tmp_path)
    assert out.returncode == 0 and "error" not in out.stderr
    assert tifffile.imread(tmp_path / "labels.tif").shape == shape
    assert leftovers(tmp_path) == ["labels.tif", "line.tif"]


def test_a_huge_plane_is_refused_without_reading_it(inputs, tmp_path):
    import time

    import zarr

    zarr.create_array(str(tmp_path / "huge.zarr"), shape=(20000, 20000), chunks=(1000, 1000), dtype="uint16")
    started = time.perf_counter()
    fails_cleanly(
        inputs, tmp_path, "segment", "huge.zarr", "-o", "labels.tif", "--weights", inputs["weights"], *FAST,
        fragments=["20000 x 20000 pixels", "Crop or downsample"],
    )
    assert time.perf_counter() - started < 60  # reading 800 MB of fill values and converting them takes longer


# -- one run at a time per output ------------------------------------------------------------------


def test_a_second_run_on_the_same_output_is_refused(inputs, tmp_path):
    """Run A is paused mid-way; run B on the same -o names A and leaves its work alone; A then finishes."""
    import signal
    import subprocess
    import time

    from support.cli_runs import command

    tifffile.imwrite(tmp_path / "four.tif", blob_stack((4, 64, 64), seed=12), photometric="minisblack")
    args = ["segment", "four.tif", "-o", "labels.tif", "--weights", str(inputs["weights"]), *FAST]
    first = subprocess.Popen([*command(), *args], cwd=tmp_path, env=inputs["env"], stderr=subprocess.PIPE, text=True)
    done = tmp_path / "labels.tif.partial" / "done"
    deadline = time.monotonic() + 120
    while not (done.is_dir() and any(done.iterdir())):
        assert first.poll() is None and time.monotonic() < deadline, "run A ended before it could be paused"
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)
    try:
        second = run(inputs, *args, check=False, cwd=tmp_path)
        assert_one_line_error(second, f"another run (process {first.pid} on", "is writing", "labels.tif")
        assert not (tmp_path / "labels.tif").exists() and (tmp_path / "labels.tif.partial" / "lock").exists()
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert tifffile.imread(tmp_path / "labels.tif").shape == (4, 64, 64)
    assert leftovers(tmp_path) == ["four.tif", "labels.tif"]


# -- prompts: the API's rules for CSV tables too ------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "option", "fragments"),
    [
        ("z,y0,x0,y1,x1\n0,10,50,40,20\n", "--boxes", ["Box 1 (z=0, y0=10, x0=50, y1=40, x1=20) has y1 < y0 or x1 < x0"]),
        ("z,y0,x0,y1,x1\n1,100,100,140,140\n", "--boxes", ["On slice z=1", "lies entirely outside the 64x64 image"]),
        ("z,y,x,label\n0,10,10,0\n1,20,20,0\n", "--points", ["On slice z=0 there are only negative points"]),
        ("z,y,x\n0,10,90\n", "--points", ["Point (x=90, y=10) lies outside the 64x64 image"]),
    ],
)
def test_prompt_tables_follow_the_api_rules(inputs, tmp_path, table, option, fragments):
    (tmp_path / "prompts.csv").write_text(table)
    fails_cleanly(
        inputs, tmp_path, "prompt", inputs["root"] / "two.tif", option, "prompts.csv", "-o", "labels.tif",
        "--weights", inputs["weights"], "--threads", "1", fragments=fragments,
    )


def test_an_empty_points_table_is_a_warning(inputs, tmp_path):
    (tmp_path / "points.csv").write_text("index,axis-0,axis-1,axis-2\n")
    out = run(
        inputs, "prompt", inputs["root"] / "two.tif", "--points", "points.csv", "-o", "labels.tif",
        "--weights", inputs["weights"], cwd=tmp_path,
    )
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert warnings[0] == "napari-mobilesam: warning: points.csv holds no points (only its header row)."
    assert "0 objects" in out.stderr
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == (2, 64, 64) and not labels.any()


# -- the embedding cache in a place it cannot be ------------------------------------------------------


def test_a_cache_folder_that_is_a_file(inputs, tmp_path):
    (tmp_path / "cache-file").write_text("not a folder")
    env = dict(inputs["env"], NAPARI_MOBILESAM_CACHE=str(tmp_path / "cache-file"))
    out = run(
        inputs, "segment", inputs["root"] / "two.tif", "-o", "labels.tif", "--weights", inputs["weights"], *FAST,
        env=env, cwd=tmp_path,
    )
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [
        f"napari-mobilesam: warning: the disk cache is off ({tmp_path / 'cache-file'} is a file, not a folder): "
        "embeddings are kept in memory only. Point --cache (or NAPARI_MOBILESAM_CACHE) at a folder."
    ]
    assert (tmp_path / "labels.tif").exists() and (tmp_path / "cache-file").read_text() == "not a folder"
    fails_cleanly(
        inputs, tmp_path, "embed", inputs["root"] / "two.tif", "--weights", inputs["weights"], "--threads", "1",
        fragments=["embed stores embeddings on disk, but", "cache-file is a file, not a folder"], env=env,
    )


# -- messages that say what is really the matter ---------------------------------------------------------


def test_info_says_what_is_really_the_matter(inputs, tmp_path, no_distributed):
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 100)
    text = run(inputs, "info", "--weights", tmp_path / "garbage.pt").stdout
    assert "[present, but not usable:" in text and "could not be loaded as plain weights" in text
    assert "[present: loads as MobileSAM]" in run(inputs, "info", "--weights", inputs["weights"]).stdout
    env = dict(inputs["env"], NAPARI_MOBILESAM_WEIGHTS=str(tmp_path / "missing.pt"))
    text = run(inputs, "info", env=env).stdout
    assert "missing (NAPARI_MOBILESAM_WEIGHTS names it; nothing is downloaded then)" in text
    weights_line = next(line for line in text.splitlines() if line.startswith("weights:"))
    assert "downloaded on first use" not in weights_line  # (the models list below says so of the cache's files)
    text = run(inputs, "info", env=dict(inputs["env"], PYTHONPATH=str(no_distributed))).stdout
    dask_line = next(line for line in text.splitlines() if line.startswith("dask:"))
    assert "dask.distributed not installed" in dask_line and dask_line.startswith("dask:     dask ")
    assert json.loads(run(inputs, "info", "--json", env=dict(inputs["env"], PYTHONPATH=str(no_distributed))).stdout)[
        "distributed"
    ] is None


def test_options_are_named_as_typed(inputs, tmp_path):
    import torch

    fails_cleanly(
        inputs, tmp_path, "segment", inputs["root"] / "two.tif", "--array", "raw", "-o", "labels.tif",
        fragments=["two.tif is a TIFF file", "(--array)", "Leave it out for a TIFF"],
    )
    if not torch.cuda.is_available():
        out = fails_cleanly(
            inputs, tmp_path, "segment", inputs["root"] / "two.tif", "-o", "labels.tif", "--device", "cuda",
            "--weights", inputs["weights"], fragments=["--device 'cuda' asks for a CUDA GPU", "pass --device cpu"],
        )
        assert "device='cpu'" not in out.stderr
