"""Writing labels atomically, and never over what we did not write."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.io.labels import check_output, read_labels, write_labels
from napari_mobilesam.io.resume import SliceStore

# -- output ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["labels.tif", "labels.zarr"])
def test_write_labels_round_trip(tmp_path, name):
    planes = [np.full((4, 5), value, np.int64) for value in range(6)]
    path = write_labels(tmp_path / name, iter(planes), (2, 3, 4, 5), attributes={"napari_mobilesam": {"a": 1}})
    labels = read_labels(path)
    assert labels.dtype == np.int32 and labels.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(labels.reshape(6, 4, 5), np.stack(planes))
    if name.endswith(".zarr"):
        array = zarr.open_array(str(path), mode="r")
        assert array.chunks == (1, 1, 4, 5) and array.attrs["napari_mobilesam"] == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ["labels.tif", "labels.zarr"])
def test_interrupted_write_leaves_nothing(tmp_path, name):
    def planes():
        yield np.zeros((4, 4), np.int32)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_labels(tmp_path / name, planes(), (3, 4, 4))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["labels.tif", "labels.zarr"])
def test_existing_output_needs_overwrite(tmp_path, name):
    write_labels(tmp_path / name, [np.ones((4, 4))], (4, 4))
    with pytest.raises(MobileSAMError, match="already exists; pass --overwrite"):
        write_labels(tmp_path / name, [np.zeros((4, 4))], (4, 4))
    write_labels(tmp_path / name, [np.full((4, 4), 7)], (4, 4), overwrite=True)
    assert (read_labels(tmp_path / name) == 7).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ["labels.tif", "labels.zarr"])
def test_overwrite_refuses_what_it_did_not_write(tmp_path, name):
    """A folder of other files, a foreign zarr array, a file that is not a TIFF: refused, left whole."""
    import zarr

    target = tmp_path / name
    (target / "sub").mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    (target / "sub" / "a.txt").write_text("mine too")
    with pytest.raises(MobileSAMError, match="Move or delete"):
        write_labels(target, [np.ones((4, 4))], (4, 4), overwrite=True)
    assert (target / "notes.txt").read_text() == "mine" and (target / "sub" / "a.txt").read_text() == "mine too"

    foreign = tmp_path / "foreign.zarr"
    zarr.create_array(str(foreign), shape=(4, 4), dtype="int32")  # someone's array, without our attribute
    with pytest.raises(MobileSAMError, match="not a labels array written by napari-mobilesam"):
        check_output(foreign, overwrite=True)
    not_tiff = tmp_path / "document.tif"
    not_tiff.write_bytes(b"PK\x03\x04")
    with pytest.raises(MobileSAMError, match="not a TIFF file"):
        write_labels(not_tiff, [np.ones((4, 4))], (4, 4), overwrite=True)
    assert not_tiff.read_bytes() == b"PK\x03\x04"


@pytest.mark.parametrize("name", ["labels.tif", "labels.zarr"])
def test_failed_overwrite_keeps_the_old_output(tmp_path, name):
    write_labels(tmp_path / name, [np.full((4, 4), 5)], (4, 4))

    def planes():
        raise OSError(28, "No space left on device")
        yield  # pragma: no cover

    with pytest.raises(MobileSAMError, match="No space left"):
        write_labels(tmp_path / name, planes(), (4, 4), overwrite=True)
    assert (read_labels(tmp_path / name) == 5).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_work_folder_of_someone_else_is_left_alone(tmp_path):
    partial = SliceStore.path_for(tmp_path / "labels.tif")
    partial.mkdir()
    (partial / "notes.txt").write_text("mine")
    for resume in (True, False):
        with pytest.raises(MobileSAMError, match="not a work folder of napari-mobilesam"):
            SliceStore.open(tmp_path / "labels.tif", {}, n_slices=1, plane_shape=(4, 4), resume=resume)
    assert (partial / "notes.txt").read_text() == "mine"


def test_check_output(tmp_path):
    with pytest.raises(MobileSAMError, match=r"\.tif, \.tiff or \.zarr"):
        check_output(tmp_path / "labels.png")
    with pytest.raises(MobileSAMError, match="does not exist"):
        check_output(tmp_path / "no" / "labels.tif")
    (tmp_path / "in.tif").write_bytes(b"")
    with pytest.raises(MobileSAMError, match="is the input"):
        check_output(tmp_path / "in.tif", overwrite=True, input_path=tmp_path / "in.tif")
