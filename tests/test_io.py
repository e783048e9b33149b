"""Reading images and prompt tables, atomic label output, resume markers, and the streaming post-pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.io import SliceStore, check_output, read_image, read_labels, write_labels
from napari_mobilesam.prompt_tables import read_boxes_csv, read_points_csv

# -- input ------------------------------------------------------------------------


def test_tiff_stack_is_memory_mapped(tmp_path):
    stack = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    image = read_image(tmp_path / "stack.tif")
    assert isinstance(image.data, np.memmap)
    assert (image.n_slices, image.leading_shape, image.labels_shape, image.rgb) == (3, (3,), (3, 8, 8), False)
    np.testing.assert_array_equal(image.data[1], stack[1])
    # Named as the widget names a layer opened from this file, so both share cached embeddings.
    assert image.image_id == f"{(tmp_path / 'stack.tif').absolute()}|(3, 8, 8)|<u2|axes(1, 2)|level0"


def test_compressed_tiff_and_rgb_guess(tmp_path):
    rgb = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tiff", rgb, compression="zlib", photometric="rgb")
    image = read_image(tmp_path / "rgb.tiff")
    assert image.rgb and image.labels_shape == (2, 8, 8) and image.n_slices == 2
    assert not read_image(tmp_path / "rgb.tiff", rgb=False).rgb


def test_zarr_array_group_and_multiscale(tmp_path):
    data = np.ones((2, 8, 8), dtype=np.float32)
    zarr.create_array(str(tmp_path / "array.zarr"), data=data)
    assert read_image(tmp_path / "array.zarr").data.shape == (2, 8, 8)

    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("raw", data=data)
    group.create_array("mask", data=data[0] > 0)
    with pytest.raises(MobileSAMError, match="--array"):
        read_image(tmp_path / "group.zarr")
    image = read_image(tmp_path / "group.zarr", array="raw")
    assert "group.zarr::raw|(2, 8, 8)|<f4" in image.image_id and image.data.shape == (2, 8, 8)
    assert read_image(tmp_path / "group.zarr" / "raw").data.shape == (2, 8, 8)  # a path inside the group
    with pytest.raises(MobileSAMError, match="no array 'nope'.*mask, raw"):
        read_image(tmp_path / "group.zarr", array="nope")

    ome = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    ome.create_array("0", data=data)
    ome.create_array("1", data=data[:, ::2, ::2])
    ome.attrs["multiscales"] = [{"datasets": [{"path": "0"}, {"path": "1"}]}]
    assert read_image(tmp_path / "ome.zarr").data.shape == (2, 8, 8)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.tif", None, "does not exist"),
        ("broken.tif", b"II*\x00 this is not a TIFF", "Cannot read .* as a TIFF"),
        ("image.png", b"\x89PNG", "expected a TIFF file"),
    ],
)
def test_bad_input_files(tmp_path, name, content, match):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(MobileSAMError, match=match):
        read_image(tmp_path / name)


def test_wrong_dimensionality(tmp_path):
    tifffile.imwrite(tmp_path / "line.tif", np.zeros(16, np.uint8))
    with pytest.raises(MobileSAMError, match=r"1D array of shape \(16,\); expected a 2D image"):
        read_image(tmp_path / "line.tif")
    zarr.create_array(str(tmp_path / "line.zarr"), data=np.zeros(16, np.uint8))
    with pytest.raises(MobileSAMError, match="1D array"):
        read_image(tmp_path / "line.zarr")
    zarr.create_array(str(tmp_path / "text.zarr"), data=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(MobileSAMError, match="expected numbers"):
        read_image(tmp_path / "text.zarr")


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


# -- resume ------------------------------------------------------------------------


def test_slice_store_resumes_only_the_same_run(tmp_path):
    output = tmp_path / "labels.tif"
    store = SliceStore.open(output, {"params": [1, 2]}, n_slices=3, plane_shape=(4, 4))
    assert store.path.name == "labels.tif.partial" and store.done() == set()
    store.write(1, np.full((4, 4), 5))
    again = SliceStore.open(output, {"params": [1, 2]}, n_slices=3, plane_shape=(4, 4))
    assert again.done() == {1} and (again.read(1) == 5).all()
    assert SliceStore.open(output, {"params": [1, 3]}, n_slices=3, plane_shape=(4, 4)).done() == set()
    store = SliceStore.open(output, {"params": [1, 3]}, n_slices=3, plane_shape=(4, 4))
    store.write(0, np.ones((4, 4)))
    assert SliceStore.open(output, {"params": [1, 3]}, 3, (4, 4), resume=False).done() == set()
    store.remove()
    assert not store.path.exists()


def test_slice_chunk_without_marker_is_redone(tmp_path):
    store = SliceStore.open(tmp_path / "out.zarr", {}, n_slices=2, plane_shape=(4, 4))
    store._array[0] = np.ones((4, 4), np.int32)  # killed after the chunk, before the marker
    assert SliceStore.open(tmp_path / "out.zarr", {}, 2, (4, 4)).done() == set()


# -- streaming post-pass --------------------------------------------------------------


def _blob_slices(leading, size=24, seed=0):
    """Per-slice labels with ids offset as iter_segment_stack gives them; blobs drift slowly in z."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(leading))
    stride = size * size + 1
    yy, xx = np.mgrid[:size, :size]
    slices = np.zeros((n, size, size), np.int64)
    centres = rng.uniform(4, size - 4, (5, 2))
    for flat in range(n):
        for k, (cy, cx) in enumerate(centres):
            if rng.random() < 0.2:
                continue  # an object missing on this slice
            cy, cx = cy + rng.normal(0, 1), cx + rng.normal(0, 1)
            radius = rng.uniform(2, 4)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
            slices[flat][inside] = k + 1 + flat * stride
    return slices


@pytest.mark.parametrize("leading", [(), (1,), (5,), (2, 4)])
@pytest.mark.parametrize("link_3d", [True, False])
def test_assemble_equals_link_then_relabel(leading, link_3d):
    from napari_mobilesam.distributed import assemble_labels
    from napari_mobilesam.stack import link_slices, relabel_in_order

    slices = _blob_slices(leading or (1,))
    whole = slices.reshape(*leading, *slices.shape[-2:])
    expected = relabel_in_order(link_slices(whole, 0.5) if link_3d else whole)
    planes, count = assemble_labels(lambda k: slices[k], leading, link_3d, 0.5)
    result = np.stack(list(planes)).reshape(whole.shape)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, expected)
    assert count == len(np.unique(expected)) - (0 in expected)


# -- prompt tables --------------------------------------------------------------------


def test_points_written_by_napari(tmp_path):
    from napari.layers import Points
    from napari_builtins.io._write import napari_write_points

    layer = Points(np.array([[1, 20, 30], [0, 5, 5.5]]), features={"positive": [True, False]})
    napari_write_points(str(tmp_path / "points.csv"), layer.data, layer._get_state())
    points, labels = read_points_csv(tmp_path / "points.csv", ndim=3)
    np.testing.assert_array_equal(points, [[1, 20, 30], [0, 5, 5.5]])
    assert labels.tolist() == [1, 0]
    with pytest.raises(MobileSAMError, match="3 coordinate columns .* 2 axes"):
        read_points_csv(tmp_path / "points.csv", ndim=2)


@pytest.mark.parametrize(
    ("table", "labels"),
    [
        ("z,y,x\n0,1,2\n1,3,4\n", [1, 1]),
        ("z,y,x,label\n0,1,2,positive\n1,3,4,negative\n", [1, 0]),
        ("index,axis-0,axis-1,axis-2,label\n0,0,1,2,1\n1,1,3,4,0\n", [1, 0]),
    ],
)
def test_points_tables(tmp_path, table, labels):
    (tmp_path / "p.csv").write_text(table)
    points, polarity = read_points_csv(tmp_path / "p.csv", ndim=3)
    np.testing.assert_array_equal(points, [[0, 1, 2], [1, 3, 4]])
    assert polarity.tolist() == labels


def test_bad_points_tables(tmp_path):
    (tmp_path / "p.csv").write_text("z,y,x,label\n0,1,2,maybe\n")
    with pytest.raises(MobileSAMError, match="row 2: cannot tell"):
        read_points_csv(tmp_path / "p.csv", ndim=3)
    (tmp_path / "q.csv").write_text("a,b\n1,2\n")
    with pytest.raises(MobileSAMError, match="no coordinate columns"):
        read_points_csv(tmp_path / "q.csv", ndim=3)
    with pytest.raises(MobileSAMError, match="does not exist"):
        read_points_csv(tmp_path / "missing.csv", ndim=3)


def test_boxes_written_by_napari_and_plain(tmp_path):
    from napari.layers import Shapes
    from napari_builtins.io._write import napari_write_shapes

    rectangle = np.array([[1, 10, 12], [1, 10, 30], [1, 40, 30], [1, 40, 12]])
    layer = Shapes([rectangle], shape_type="rectangle")
    napari_write_shapes(str(tmp_path / "shapes.csv"), layer.data, layer._get_state())
    np.testing.assert_array_equal(read_boxes_csv(tmp_path / "shapes.csv", ndim=3), [[1, 10, 12, 40, 30]])
    (tmp_path / "boxes.csv").write_text("z,y0,x0,y1,x1\n2,1,2,3,4\n")
    np.testing.assert_array_equal(read_boxes_csv(tmp_path / "boxes.csv", ndim=3), [[2, 1, 2, 3, 4]])
    (tmp_path / "bad.csv").write_text("z,top,left\n1,2,3\n")
    with pytest.raises(MobileSAMError, match="not a boxes table"):
        read_boxes_csv(tmp_path / "bad.csv", ndim=3)


def test_store_fingerprint_is_json(tmp_path):
    store = SliceStore.open(tmp_path / "x.tif", {"limits": (1.0, 2.0)}, 1, (2, 2))
    meta = json.loads((store.path / "zarr.json").read_text())["attributes"][SliceStore.FORMAT]
    assert meta["fingerprint"] == {"limits": [1.0, 2.0]}
    # A tuple in the fingerprint still matches after the JSON round trip.
    store.write(0, np.zeros((2, 2)))
    assert SliceStore.open(tmp_path / "x.tif", {"limits": (1.0, 2.0)}, 1, (2, 2)).done() == {0}
