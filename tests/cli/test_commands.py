"""The napari-mobilesam command, run as users run it: a subprocess, generated inputs, recipe weights.

Kept lean for a 2-core machine: 64x64 slices, 2x2 prompt grids, one torch
thread, and one embedding cache shared by the module (each slice is encoded once).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from support.cli_runs import FAST, assert_one_line_error, blob_stack, command, leftovers, run, segment

ROOT = Path(__file__).resolve().parents[2]

# -- wiring -------------------------------------------------------------------------


def test_entry_point_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("scripts", {})
    assert scripts.get("napari-mobilesam") == "napari_mobilesam.cli.main:main"


def test_version_and_help(work):
    from napari_mobilesam import __version__

    assert run(work, "--version").stdout.strip() == f"napari-mobilesam {__version__}"
    usage = run(work, "segment", "--help").stdout
    for option in (
        "--sampler",
        "--link-3d",
        "--scheduler",
        "--workers",
        "--weights",
        "--device",
        "--cache",
        "--threads",
        "--overwrite",
        "--sample",
        "--points-per-side",
    ):
        assert option in usage


def test_info(work):
    out = run(work, "info", "--weights", work["weights"])
    assert "napari-mobilesam" in out.stdout and str(work["weights"]) in out.stdout and "[present: loads as MobileSAM]" in out.stdout
    assert str(work["root"] / "cache" / "embeddings") in out.stdout
    report = json.loads(run(work, "info", "--json").stdout)
    assert report["device"] == "cpu" and report["weights"]["present"] is False
    assert report["weights"]["path"] == str(work["root"] / "cache" / "weights" / "mobile_sam.pt")
    assert report["cache"]["path"] == str(work["root"] / "cache" / "embeddings")


# -- segment ---------------------------------------------------------------------------


def test_segment_stack_equals_the_python_api(work):
    """The CLI's labels are segment_stack's, ids included, with and without linking."""
    import torch

    from napari_mobilesam import load_model
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.segment.stack import segment_stack

    root = work["root"]
    segment(work, "stack.tif", "linked.tif", "--link-3d")
    segment(work, "stack.tif", "plain.zarr")
    linked = tifffile.imread(root / "linked.tif")
    import zarr

    plain = zarr.open_array(str(root / "plain.zarr"), mode="r")
    assert plain.chunks == (1, 64, 64) and plain.dtype == np.int32 and linked.dtype == np.int32
    assert leftovers(root, "recipe.pt", "stack.tif", "image.tif", "cache", "linked.tif", "plain.zarr") == []

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_model(work["weights"], "cpu")
        cache = EmbeddingCache(directory=root / "cache" / "embeddings")  # the CLI's: nothing is encoded again
        stack = tifffile.imread(root / "stack.tif")
        params = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        image_id = f"{root / 'stack.tif'}|(3, 64, 64)|<u2|axes(1, 2)|level0"
        for link_3d, result in ((True, linked), (False, plain[...])):
            expected = segment_stack(stack, model, cache=cache, link_3d=link_3d, image_id=image_id, **params)
            np.testing.assert_array_equal(result, expected)
        assert cache.stats["misses"] == 0
    finally:
        torch.set_num_threads(threads)
    assert plain[...].max() > 0 and len(np.unique(plain[...])) - 1 >= len(np.unique(linked)) - 1


def test_segment_2d_image_with_boxes_sampler(work):
    segment(work, "image.tif", "image_labels.tif", "--sampler", "boxes")
    labels = tifffile.imread(work["root"] / "image_labels.tif")
    assert labels.shape == (64, 64) and labels.dtype == np.int32


def test_overwrite_replaces(work):
    root = work["root"]
    tifffile.imwrite(root / "old.tif", np.full((3, 64, 64), 99, np.int32))
    assert_one_line_error(segment(work, "stack.tif", "old.tif", check=False), "already exists", "--overwrite")
    assert (tifffile.imread(root / "old.tif") == 99).all()
    segment(work, "stack.tif", "old.tif", "--overwrite")
    assert (tifffile.imread(root / "old.tif") != 99).all()


def user_folder(path: Path) -> dict[str, bytes]:
    """A folder of someone's files (as --overwrite might meet by a typo in -o); returns its content."""
    (path / "sub").mkdir(parents=True)
    files = {"notes.txt": b"my notes", "sub/a.txt": b"a", "thesis.docx": b"PK\x03\x04 chapter 1"}
    for name, data in files.items():
        (path / name).write_bytes(data)
    return files


@pytest.mark.parametrize("name", ["victim.tif", "victim.zarr"])
def test_overwrite_never_deletes_a_folder_of_other_files(work, name):
    """--overwrite replaces only what the tool could have written; a folder of a user's files is refused."""
    root = work["root"] / f"overwrite-{name}"
    root.mkdir()
    files = user_folder(root / name)
    out = run(work, "segment", work["root"] / "stack.tif", "-o", root / name, "--overwrite", "--weights", work["weights"],
              *FAST, check=False)
    assert_one_line_error(out, str(root / name), "Move or delete")
    for relative, data in files.items():
        assert (root / name / relative).read_bytes() == data
    assert leftovers(root, name) == []  # no work folder, no temporary output


@pytest.mark.parametrize(
    "name, content",
    [("victim.tif", b"PK\x03\x04 not a tiff"), ("victim.tiff", b""), ("victim.zarr", b"a file, not a folder")],
)
def test_overwrite_never_replaces_a_file_that_is_not_ours(work, name, content):
    root = work["root"] / f"overwrite-file-{name}"
    root.mkdir()
    (root / name).write_bytes(content)
    out = run(work, "segment", work["root"] / "stack.tif", "-o", root / name, "--overwrite", "--weights", work["weights"],
              *FAST, check=False)
    assert_one_line_error(out, str(root / name))
    assert (root / name).read_bytes() == content and leftovers(root, name) == []


def test_overwrite_replaces_its_own_zarr(work):
    root = work["root"]
    segment(work, "stack.tif", "own.zarr")
    first = (root / "own.zarr" / "zarr.json").read_text()
    segment(work, "stack.tif", "own.zarr", "--overwrite", "--sampler", "boxes")
    assert (root / "own.zarr" / "zarr.json").read_text() != first  # replaced: other parameters recorded
    shutil.rmtree(root / "own.zarr")


def test_resume_after_interrupt_and_kill(work):
    """Ctrl-C, then a hard kill: no output either time, finished slices kept, the final result unchanged."""
    root = work["root"]
    stack = blob_stack((5, 64, 64), seed=3)
    tifffile.imwrite(root / "five.tif", stack, photometric="minisblack")
    segment(work, "five.tif", "reference.tif")  # uninterrupted, and fills the cache so slices are quick
    done = root / "resumed.tif.partial" / "done"
    cmd = [*command(), "segment", "five.tif", "-o", "resumed.tif", "--weights", str(work["weights"]), *FAST]

    def start_and_stop(sig, after: int) -> subprocess.Popen:
        process = subprocess.Popen(cmd, cwd=root, env=work["env"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (done.is_dir() and len(list(done.iterdir())) >= after):
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(sig)
        process.wait(timeout=60)
        return process

    interrupted = start_and_stop(signal.SIGINT, after=1)
    stderr = interrupted.stderr.read()
    assert interrupted.returncode == 130 and "Traceback" not in stderr
    assert "interrupted" in stderr and "resumed.tif.partial" in stderr and "resume" in stderr
    assert not (root / "resumed.tif").exists()
    first = len(list(done.iterdir()))

    killed = start_and_stop(signal.SIGKILL, after=first + 1)
    assert killed.returncode == -signal.SIGKILL and not (root / "resumed.tif").exists()
    kept = len(list(done.iterdir()))
    assert first < kept < 5

    out = run(work, "segment", "five.tif", "-o", "resumed.tif", "--weights", work["weights"], *FAST[:-1])
    assert f"{kept} from an earlier run" in out.stderr
    np.testing.assert_array_equal(tifffile.imread(root / "resumed.tif"), tifffile.imread(root / "reference.tif"))
    assert not (root / "resumed.tif.partial").exists()


def test_sample_in_process(work, monkeypatch, tmp_path, capsys):
    """``--sample`` segments the built-in stack (made smaller here to keep the test quick)."""
    from napari_mobilesam import _sample_data
    from napari_mobilesam.cli.main import main as cli

    small = blob_stack((2, 64, 64), seed=5)
    monkeypatch.setattr(_sample_data, "synthetic_nuclei", lambda *a, **k: (small, np.zeros_like(small)))
    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(work["root"] / "cache"))
    status = cli(
        ["segment", "--sample", "-o", str(tmp_path / "labels.tif"), "--weights", str(work["weights"]), *FAST[:-1]]
    )
    assert status == 0
    assert tifffile.imread(tmp_path / "labels.tif").shape == (2, 64, 64)
    assert "Wrote" in capsys.readouterr().err


def test_sample_offline_says_how_to_supply_weights(work, tmp_path):
    env = dict(
        work["env"],
        NAPARI_MOBILESAM_CACHE=str(tmp_path / "empty"),
        NAPARI_MOBILESAM_WEIGHTS_URL="http://127.0.0.1:9/mobile_sam.pt",
    )
    out = run(work, "segment", "--sample", "-o", tmp_path / "labels.tif", check=False, env=env)
    assert out.stderr.startswith("Downloading the MobileSAM weights (41 MB, once) from http://127.0.0.1:9/")
    assert_one_line_error(out, "Could not download", "NAPARI_MOBILESAM_WEIGHTS=", "copy it to", notes=("Downloading",))
    assert not (tmp_path / "labels.tif").exists()


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "args", "fragments"),
    [
        (None, ["missing.tif", "-o", "out.tif"], ["missing.tif does not exist"]),
        ("broken", ["broken.tif", "-o", "out.tif"], ["Cannot read", "as a TIFF image"]),
        ("line", ["line.tif", "-o", "out.tif"], ["1D array", "expected a 2D image"]),
        ("stack", ["in.tif", "-o", "out.png"], ["name the output .tif, .tiff or .zarr"]),
        ("stack", ["in.tif", "-o", "in.tif", "--overwrite"], ["is the input"]),
        ("stack", ["in.tif", "-o", "out.tif", "--weights", "nope.pt"], ["nope.pt does not exist"]),
        ("stack", ["in.tif", "-o", "out.tif", "--box-nms-thresh", "5"], ["--box-nms-thresh must be in (0, 1]"]),
        ("stack", ["in.tif", "-o", "out.tif", "--device", "cuda:7"], ["CUDA"]),
    ],
)
def test_bad_input_is_one_line(work, tmp_path, make, args, fragments):
    if make == "broken":
        (tmp_path / "broken.tif").write_bytes(b"II*\x00" + bytes(100))
    elif make == "line":
        tifffile.imwrite(tmp_path / "line.tif", np.zeros(16, np.uint16))
    elif make == "stack":
        tifffile.imwrite(tmp_path / "in.tif", np.zeros((2, 16, 16), np.uint16), photometric="minisblack")
    before = leftovers(tmp_path)
    out = subprocess.run(
        [
            *command(),
            "segment",
            *args,
            "--weights" if "--weights" not in args else "--quiet",
            *([str(work["weights"])] if "--weights" not in args else []),
        ],
        capture_output=True,
        text=True,
        env=work["env"],
        cwd=tmp_path,
        timeout=120,
    )
    assert_one_line_error(out, *fragments)
    assert leftovers(tmp_path) == before  # nothing written, not even a temporary


def test_usage_errors_exit_2(work):
    assert run(work, "segment", "-o", "x.tif", check=False).returncode == 2  # no INPUT
    assert run(work, "segment", "stack.tif", "--sample", "-o", "x.tif", check=False).returncode == 2
    out = run(work, "prompt", "stack.tif", "-o", "x.tif", check=False)
    assert out.returncode == 2 and "--points" in out.stderr
    assert run(work, "segment", "stack.tif", "-o", "x.tif", "--workers", "0", check=False).returncode == 2


# -- embed and prompt -----------------------------------------------------------------------


def test_embed_then_reuse(work, tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", blob_stack((2, 64, 64), seed=7), photometric="minisblack")
    base = ["embed", tmp_path / "two.tif", "--weights", work["weights"], "--cache", tmp_path / "emb", "--threads", "1"]
    assert "2 encoded, 0 already cached" in run(work, *base).stderr
    assert "0 encoded, 2 already cached" in run(work, *base).stderr
    assert any((tmp_path / "emb").glob("*.zarr"))


def test_prompt_from_napari_points(work, tmp_path):
    from napari.layers import Points
    from napari_builtins.io._write import napari_write_points

    layer = Points(np.array([[0, 20, 20], [2, 30, 40], [2, 5, 5]]), features={"positive": [True, True, False]})
    napari_write_points(str(tmp_path / "points.csv"), layer.data, layer._get_state())
    run(
        work,
        "prompt",
        work["root"] / "stack.tif",
        "--points",
        tmp_path / "points.csv",
        "-o",
        tmp_path / "p.tif",
        "--weights",
        work["weights"],
        "--threads",
        "1",
    )
    labels = tifffile.imread(tmp_path / "p.tif")
    assert labels.shape == (3, 64, 64) and labels.dtype == np.int32
    assert not labels[1].any()  # no prompt on slice 1


def test_progress_bar_on_a_terminal():
    import io

    from napari_mobilesam.cli.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with ProgressBar("segment", stream=stream) as bar:
        for done in range(4):
            bar.update(done, 3 if done < 4 else 3)
    assert "3/3 slices" in stream.getvalue() and stream.getvalue().endswith("\n")
    quiet = Terminal()
    with ProgressBar("segment", quiet=True, stream=quiet) as bar:
        bar.update(1, 3)
    assert quiet.getvalue() == ""
