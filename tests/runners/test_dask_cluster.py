"""Slices on a dask.distributed cluster: a LocalCluster of 2 worker processes on loopback.

A cluster run must give exactly the labels of a run in one process, load the
model once per worker, and resume a run that was interrupted.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from support.cli_runs import FAST, blob_stack, run, segment

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    import logging

    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as local,
        Client(local) as client,
    ):
        yield {"address": local.scheduler_address, "client": client}


@pytest.fixture(scope="module")
def stack_file(work):
    tifffile.imwrite(work["root"] / "four.tif", blob_stack((4, 64, 64), seed=11), photometric="minisblack")
    segment(work, "four.tif", "single.zarr", "--link-3d")  # the single-process reference; fills the cache
    return work["root"] / "four.tif"


def read_zarr(path):
    import zarr

    return zarr.open_array(str(path), mode="r")[...]


def test_scheduler_run_equals_single_process(work, cluster, stack_file):
    root = work["root"]
    out = segment(work, stack_file, "cluster.zarr", "--link-3d", "--scheduler", cluster["address"])
    assert out.returncode == 0
    np.testing.assert_array_equal(read_zarr(root / "cluster.zarr"), read_zarr(root / "single.zarr"))
    assert read_zarr(root / "cluster.zarr").max() > 0
    # Every slice went to a worker; each worker process loaded the model at most once.
    from napari_mobilesam.engine.session import model_loads

    loads = cluster["client"].run(model_loads)
    assert sorted(loads.values()) in ([1, 1], [0, 1])


def test_local_workers_option(work, stack_file):
    segment(work, stack_file, "workers.zarr", "--link-3d", "--workers", "2")
    np.testing.assert_array_equal(read_zarr(work["root"] / "workers.zarr"), read_zarr(work["root"] / "single.zarr"))


def test_cluster_resumes_an_interrupted_run(work, cluster, stack_file, monkeypatch):
    """Two slices finished in this process before a Ctrl-C; the cluster does only the other two."""
    from napari_mobilesam.cli.main import main as cli
    from napari_mobilesam.runners import slices as runner

    root = work["root"]
    real = runner.run_batch
    calls = []

    def stop_after_two(job, slice_indices, planes):  # a CPU encodes one slice per batch
        if len(calls) >= 2:
            raise KeyboardInterrupt
        calls.extend(slice_indices)
        return real(job, slice_indices, planes)

    monkeypatch.setattr(runner, "run_batch", stop_after_two)
    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(root / "cache"))
    argv = [
        "segment",
        str(stack_file),
        "-o",
        str(root / "resumed.zarr"),
        "--weights",
        str(work["weights"]),
        "--link-3d",
        *FAST[:-1],
    ]
    assert cli(argv) == 130
    assert not (root / "resumed.zarr").exists() and len(list((root / "resumed.zarr.partial" / "done").iterdir())) == 2
    monkeypatch.setattr(runner, "run_batch", real)

    out = run(work, *argv, "--scheduler", cluster["address"])
    assert "2 from an earlier run" in out.stderr
    np.testing.assert_array_equal(read_zarr(root / "resumed.zarr"), read_zarr(root / "single.zarr"))


def test_embed_on_cluster(work, cluster, tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", blob_stack((2, 64, 64), seed=13), photometric="minisblack")
    args = ["embed", tmp_path / "two.tif", "--weights", work["weights"], "--cache", tmp_path / "emb"]
    assert "2 encoded" in run(work, *args, "--scheduler", cluster["address"]).stderr
    assert "2 already cached" in run(work, *args).stderr  # the workers' embeddings serve this process


def test_worker_errors_reach_the_user_as_one_line(work, cluster, stack_file, tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    out = run(
        work,
        "segment",
        stack_file,
        "-o",
        tmp_path / "x.zarr",
        "--weights",
        tmp_path / "broken.pt",
        "-q",
        "--scheduler",
        cluster["address"],
        check=False,
    )
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("napari-mobilesam: error: ")
    assert "broken.pt" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_unreachable_scheduler(work, stack_file, tmp_path):
    env = dict(work["env"], DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    out = run(
        work,
        "segment",
        stack_file,
        "-o",
        tmp_path / "x.zarr",
        "--weights",
        work["weights"],
        "-q",
        "--scheduler",
        "tcp://127.0.0.1:9",
        check=False,
        env=env,
    )
    assert out.returncode == 1 and "Cannot reach the dask scheduler at tcp://127.0.0.1:9" in out.stderr


def test_ais_on_the_cluster_equals_this_process(work, cluster, tmp_path):
    """Workers load the named model with its decoder file; the maps this process filed serve them from the disk cache."""
    from recipe import recipe_decoder_state_dict

    torch = pytest.importorskip("torch")
    torch.save(recipe_decoder_state_dict(0), tmp_path / "decoder.pt")
    # Permissive thresholds: the recipe decoder's maps then seed objects on this small image.
    args = ["--model", "vit_t_lm", "--decoder", tmp_path / "decoder.pt", "--sampler", "ais", "--min-size", "3",
            "--center-distance-threshold", "1", "--boundary-distance-threshold", "1", "--foreground-threshold", "0"]
    run(work, "segment", "image.tif", "-o", tmp_path / "here.tif", "--weights", work["weights"], *args, "-q")
    run(work, "segment", "image.tif", "-o", tmp_path / "there.tif", "--weights", work["weights"], *args, "-q",
        "--scheduler", cluster["address"])
    here, there = tifffile.imread(tmp_path / "here.tif"), tifffile.imread(tmp_path / "there.tif")
    np.testing.assert_array_equal(here, there)
    assert there.max() > 0
