"""The plane on screen and coordinates on it, without a viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.interactive import planes as slicing


def test_plane_steps_round_and_clip():
    assert slicing.plane_steps([2.4, 10.0, 3.0], (1, 2), (5, 20, 20)) == (2, None, None)
    assert slicing.plane_steps([7.6, 1.0, 3.0, 4.0], (2, 3), (3, 5, 20, 20)) == (2, 1, None, None)
    assert slicing.plane_steps([-3.0, 0, 0], (1, 2), (5, 20, 20)) == (0, None, None)
    assert slicing.plane_steps([4.0, 0, 0], (0, 2), (5, 20, 20)) == (None, 0, None)


@pytest.mark.parametrize("displayed", [(0,), (1, 1), (0, 3)])
def test_plane_steps_rejects_bad_views(displayed):
    with pytest.raises(MobileSAMError, match="2D"):
        slicing.plane_steps([0, 0, 0], displayed, (5, 20, 20))


def test_read_plane_4d_and_rgb():
    data = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(slicing.read_plane(data, (1, 2, None, None)), data[1, 2])
    np.testing.assert_array_equal(slicing.read_plane(data, (1, None, 3, None)), data[1, :, 3])
    rgb = np.zeros((4, 6, 8, 3), dtype=np.uint8)
    rgb[2, ..., 1] = 7
    plane = slicing.read_plane(rgb, (2, None, None), rgb=True)
    assert plane.shape == (6, 8, 3) and (plane[..., 1] == 7).all()


def test_read_plane_reads_only_that_plane_of_a_dask_array():
    da = pytest.importorskip("dask.array")
    import dask

    reads = []

    def load(z):
        reads.append(z)
        return np.full((16, 16), z, dtype=np.uint16)

    stack = da.stack([da.from_delayed(dask.delayed(load)(z), (16, 16), np.uint16) for z in range(6)])
    plane = slicing.read_plane(stack, (4, None, None))
    assert isinstance(plane, np.ndarray) and (plane == 4).all()
    assert reads == [4]


def test_choose_level_closest_not_below_1024():
    shapes = [(4000, 3000), (2000, 1500), (1000, 750), (500, 375)]
    assert slicing.choose_level(shapes, (0, 1)) == 1
    assert slicing.choose_level([(1024, 10), (512, 5)], (0, 1)) == 0
    assert slicing.choose_level([(800, 600), (400, 300)], (0, 1)) == 0  # all small: full resolution
    # only the displayed axes count: a long z axis does not
    assert slicing.choose_level([(5000, 2048, 2048), (5000, 1024, 1024), (5000, 512, 512)], (1, 2)) == 1


def test_downsample_and_plane_index_on_a_level():
    factors = slicing.downsample_factors((40, 2048, 2048), (20, 1024, 1024))
    np.testing.assert_allclose(factors, [2, 2, 2])
    assert slicing.plane_index((7, None, None), factors) == (3, slice(None), slice(None))


def test_world_to_data_round_trip_with_scale_translate_affine():
    scale, translate = (2.0, 0.5, 0.25), (10.0, -3.0, 4.0)
    affine = np.eye(4)
    affine[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]
    affine[:3, 3] = (1, 2, 3)
    data = np.array([[1.0, 2.0, 3.0], [0.0, 5.5, -1.0]])
    world = slicing.data_to_world(data, scale, translate, affine)
    np.testing.assert_allclose(slicing.world_to_data(world, scale, translate, affine), data)
    np.testing.assert_allclose(slicing.world_to_data([[12.0, -2.0, 5.0]], scale, translate), [[1.0, 2.0, 4.0]])


def test_points_on_plane_and_to_xy():
    steps = (3, None, None)
    coords = np.array([[3.2, 10.0, 20.0], [4.0, 1.0, 1.0], [2.6, 5.0, 6.0]])
    np.testing.assert_array_equal(slicing.on_plane(coords, steps), [True, False, True])
    np.testing.assert_allclose(slicing.to_plane_xy(coords[[0]], steps), [[20.0, 10.0]])
    # a level twice smaller: full-resolution pixel centres 0 and 1 straddle level pixel 0's centre
    np.testing.assert_allclose(slicing.to_plane_xy([[0, 0.5, 0.5]], steps, (1, 2, 2)), [[0.0, 0.0]])


def test_inside_plane_edges():
    xy = [[-0.5, 0], [-0.6, 0], [9.5, 4.5], [9.6, 0], [0, 4.6]]
    np.testing.assert_array_equal(slicing.inside_plane(xy, (5, 10)), [True, False, True, False, False])


def test_upsample_mask_nearest():
    mask = np.array([[True, False], [False, True]])
    big = slicing.upsample_mask(mask[None], (4, 5))
    assert big.shape == (1, 4, 5)
    assert big[0, :2, :3].all() and not big[0, :2, 3:].any() and big[0, 2:, 3:].all()


def test_slice_number_and_neighbours():
    assert slicing.slice_number((None, None), (8, 8)) == (0, 1)
    assert slicing.slice_number((1, 2, None, None), (2, 5, 8, 8)) == (7, 10)
    assert slicing.slice_number((None, 2, None), (8, 5, 8)) == (2, 5)
    assert slicing.neighbour_steps((1, 0, None, None), (2, 5, 8, 8)) == [(1, 1, None, None)]
    assert slicing.neighbour_steps((2, None, None), (5, 8, 8)) == [(3, None, None), (1, None, None)]
    assert slicing.neighbour_steps((None, None), (8, 8)) == []


def test_a_huge_plane_is_refused_before_it_is_read():
    """The widget's plane of a huge lazy layer: one clear error (a notification) instead of reading 800 MB."""
    from support.lazy import Unreadable

    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        slicing.read_plane(Unreadable((5, 20000, 20000)), (2, None, None))
    assert slicing.inside_plane([[-0.5, 19999.5], [-0.6, 0.0]], (20000, 20000)).tolist() == [True, False]
