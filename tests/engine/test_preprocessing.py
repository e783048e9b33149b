"""Images of every kind microscopists have become the 8-bit RGB the model expects."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam import MobileSAMError
from napari_mobilesam.engine.preprocessing import (
    MAX_PLANE_PIXELS,
    apply_boxes,
    apply_coords,
    check_plane_size,
    preprocess_shape,
    resize_longest_side,
    robust_contrast_limits,
    to_uint8_rgb,
)
from recipe import DATA


def test_uint8_rgb_is_used_as_is():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_rgb(rgb), rgb)


def test_rgba_drops_alpha():
    rgba = np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_rgb(rgba), rgba[..., :3])


def test_grey_uint16_uses_robust_percentiles_like_the_reference():
    """The reference's nuclei input is nuclei2d.tif mapped by its 1st/99.8th percentiles."""
    import tifffile

    with np.load(DATA / "nuclei.npz") as ref:
        expected = ref["image"]
    grey = tifffile.imread(DATA / "nuclei2d.tif")
    np.testing.assert_array_equal(to_uint8_rgb(grey), expected)


def test_contrast_limits_map_what_the_user_sees():
    image = np.array([[0, 100, 200, 300]], dtype=np.uint16)
    out = to_uint8_rgb(image, contrast_limits=(100, 200))
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 255, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.float16, np.float32, np.float64]
)
def test_numeric_dtypes(dtype):
    image = (np.arange(64).reshape(8, 8) - 20).astype(dtype)
    out = to_uint8_rgb(image)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert out.min() == 0 and out.max() == 255


def test_bool_image():
    image = np.zeros((4, 5), bool)
    image[1, 2] = True
    out = to_uint8_rgb(image)
    assert out[1, 2, 0] == 255 and out.sum() == 255 * 3


def test_nan_and_inf():
    image = np.array([[np.nan, -np.inf, 0.0, 1.0, np.inf]] * 3)
    out = to_uint8_rgb(image)[..., 0]
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[0, 4] == 255
    assert np.isfinite(robust_contrast_limits(image)).all()


def test_all_nan_and_constant_images_do_not_fail():
    assert to_uint8_rgb(np.full((3, 3), np.nan)).max() == 0
    assert to_uint8_rgb(np.full((3, 3), 7.0)).max() == 0
    assert to_uint8_rgb(np.full((3, 3), 7.0), contrast_limits=(7, 7)).max() == 0


def test_uint8_grey_and_single_channel():
    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    assert to_uint8_rgb(image).shape == (10, 10, 3)
    assert to_uint8_rgb(image[..., None]).shape == (10, 10, 3)


@pytest.mark.parametrize(
    "shape", [(5,), (2, 3, 4, 5), (10, 10, 2), (10, 10, 5), (0, 10)], ids=["1d", "4d", "2ch", "5ch", "empty"]
)
def test_bad_shapes_are_clear_errors(shape):
    with pytest.raises(MobileSAMError, match=r"shape|empty"):
        to_uint8_rgb(np.zeros(shape))


def test_bad_contrast_limits():
    with pytest.raises(MobileSAMError, match="contrast_limits"):
        to_uint8_rgb(np.zeros((4, 4)), contrast_limits=(5, 1))
    with pytest.raises(MobileSAMError, match="contrast_limits"):
        to_uint8_rgb(np.zeros((4, 4)), contrast_limits=(0, np.nan))


def test_non_numeric_image():
    with pytest.raises(MobileSAMError, match="dtype"):
        to_uint8_rgb(np.array([["a", "b"], ["c", "d"]]))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((512, 512), (1024, 1024)),
        ((300, 500), (614, 1024)),
        ((5000, 3000), (1024, 614)),
        ((1, 1), (1024, 1024)),
        # Thin planes: the official rounding makes their short side 0 px; here it stays 1 px.
        ((1, 5000), (1, 1024)),
        ((5000, 1), (1024, 1)),
        ((1, 20000), (1, 1024)),
        ((2, 5000), (1, 1024)),
        ((3, 5000), (1, 1024)),
    ],
)
def test_resize_longest_side(size, expected):
    assert preprocess_shape(*size) == expected
    rgb = np.zeros((*size, 3), np.uint8)
    assert resize_longest_side(rgb).shape == (*expected, 3)


def test_large_image_percentiles_are_subsampled_but_close():
    rng = np.random.default_rng(0)
    image = rng.normal(1000, 100, (3000, 2000)).astype(np.float32)
    low, high = robust_contrast_limits(image)
    exact_low, exact_high = np.percentile(image, (1, 99.8))
    assert abs(low - exact_low) < 5 and abs(high - exact_high) < 10


def test_coordinates_scale_with_the_resize():
    coords = apply_coords(np.array([[250.0, 150.0]]), (300, 500))
    np.testing.assert_allclose(coords, [[250 * 1024 / 500, 150 * 614 / 300]])
    boxes = apply_boxes(np.array([0.0, 0.0, 500.0, 300.0]), (300, 500))
    np.testing.assert_allclose(boxes, [0, 0, 1024, 614])


def test_thin_planes_keep_the_official_size_wherever_it_is_not_zero():
    for height in range(1, 40):
        scale = 1024 / 5000
        official = (int(height * scale + 0.5), int(5000 * scale + 0.5))
        assert preprocess_shape(height, 5000) == (max(official[0], 1), official[1])


def test_huge_planes_are_refused_from_their_shape():
    from support.lazy import Unreadable

    check_plane_size(11585, 11585)  # the largest square plane segmented
    with pytest.raises(MobileSAMError, match=r"20000 x 20000 pixels \(400 million\).*Crop or downsample"):
        check_plane_size(20000, 20000)
    with pytest.raises(MobileSAMError, match="20000 x 20000"):
        to_uint8_rgb(Unreadable((20000, 20000)))
    with pytest.raises(MobileSAMError, match="20000 x 20000"):
        to_uint8_rgb(Unreadable((20000, 20000, 3), np.uint8))
    assert MAX_PLANE_PIXELS >= 10_000 * 10_000
