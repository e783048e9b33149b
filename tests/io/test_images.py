"""Opening images: TIFF (memory-mapped), zarr arrays, groups and multiscales; bad files refused."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.io.images import read_image

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


def test_array_name_on_a_tiff_says_to_leave_it_out(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(MobileSAMError, match=r"stack.tif is a TIFF file; the array name 'raw' \(--array\)") as error:
        read_image(tmp_path / "stack.tif", array="raw")
    assert "zarr array" not in str(error.value).split(";")[0]


@pytest.mark.parametrize("shape", [(20000, 20000), (3, 20000, 20000)])
def test_huge_planes_are_refused_without_reading_them(tmp_path, shape):
    """A lazy zarr array of 20000 x 20000 planes (no chunk written: a few bytes on disk) is refused at once."""
    zarr.create_array(str(tmp_path / "huge.zarr"), shape=shape, chunks=(1,) * (len(shape) - 2) + (1000, 1000), dtype="uint16")
    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        read_image(tmp_path / "huge.zarr")


@pytest.mark.parametrize("shape", [(1, 1), (1, 5000), (5000, 1), (2, 1, 20000)])
def test_thin_planes_are_opened(tmp_path, shape):
    tifffile.imwrite(tmp_path / "thin.tif", np.ones(shape, np.uint16), photometric="minisblack")
    assert read_image(tmp_path / "thin.tif").labels_shape == shape
