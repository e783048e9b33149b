"""The work folder of an interrupted run: resumed only by the same run."""

from __future__ import annotations

import json

import numpy as np

from napari_mobilesam.io.resume import SliceStore

# -- resume ------------------------------------------------------------------------


def test_slice_store_resumes_only_the_same_run(tmp_path):
    output = tmp_path / "labels.tif"
    store = SliceStore.open(output, {"params": [1, 2]}, n_slices=3, plane_shape=(4, 4))
    assert store.path.name == "labels.tif.partial" and store.done() == set()
    store.write(1, np.full((4, 4), 5))
    store.release()  # the run ends; each open below is another run, after the one before it
    again = SliceStore.open(output, {"params": [1, 2]}, n_slices=3, plane_shape=(4, 4))
    assert again.done() == {1} and (again.read(1) == 5).all()
    again.release()
    other = SliceStore.open(output, {"params": [1, 3]}, n_slices=3, plane_shape=(4, 4))
    assert other.done() == set()
    other.release()
    store = SliceStore.open(output, {"params": [1, 3]}, n_slices=3, plane_shape=(4, 4))
    store.write(0, np.ones((4, 4)))
    store.release()
    store = SliceStore.open(output, {"params": [1, 3]}, 3, (4, 4), resume=False)
    assert store.done() == set()
    store.remove()
    assert not store.path.exists()


def test_slice_chunk_without_marker_is_redone(tmp_path):
    store = SliceStore.open(tmp_path / "out.zarr", {}, n_slices=2, plane_shape=(4, 4))
    store._array[0] = np.ones((4, 4), np.int32)  # killed after the chunk, before the marker
    store.release()
    assert SliceStore.open(tmp_path / "out.zarr", {}, 2, (4, 4)).done() == set()



def test_store_fingerprint_is_json(tmp_path):
    store = SliceStore.open(tmp_path / "x.tif", {"limits": (1.0, 2.0)}, 1, (2, 2))
    meta = json.loads((store.path / "zarr.json").read_text())["attributes"][SliceStore.FORMAT]
    assert meta["fingerprint"] == {"limits": [1.0, 2.0]}
    # A tuple in the fingerprint still matches after the JSON round trip.
    store.write(0, np.zeros((2, 2)))
    store.release()
    assert SliceStore.open(tmp_path / "x.tif", {"limits": (1.0, 2.0)}, 1, (2, 2)).done() == {0}
