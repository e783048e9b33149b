"""One numbering and one linker for a stack's ids: in memory, streamed, on dask and in the widget."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam import MobileSAMError
from napari_mobilesam.segment.linking import (
    link_and_renumber,
    link_stack,
    match_masks,
    offset_labels,
    relabel_in_order,
    slice_offsets,
)

# -- match_masks --------------------------------------------------------


def square(shape, y0, x0, size) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return mask


def test_match_masks_is_one_to_one_best_first():
    first = np.zeros((10, 20), np.int64)
    second = np.zeros((10, 20), np.int64)
    first[0:10, 0:10] = 7  # one big mask...
    second[0:10, 0:6] = 3  # ...continues as two: only the better overlap links (IoU 0.6 vs 0.4)
    second[0:10, 6:10] = 4
    first[0:10, 12:20] = 9
    second[0:10, 13:20] = 5  # IoU 7/8
    assert match_masks(first, second, 0.3) == [(9, 5), (7, 3)]
    assert match_masks(first, second, 0.7) == [(9, 5)]
    assert match_masks(first, np.zeros_like(second), 0.1) == []


def test_match_masks_threshold_is_inclusive_and_ties_go_to_smaller_ids():
    first = np.zeros((4, 8), np.int64)
    first[:, 0:4] = 1
    second = np.zeros((4, 8), np.int64)
    second[:, 0:2] = 2  # IoU 0.5 exactly
    assert match_masks(first, second, 0.5) == [(1, 2)]
    assert match_masks(first, second, 0.51) == []
    tie = np.zeros((4, 8), np.int64)
    tie[:, 0:2], tie[:, 2:4] = 6, 5  # both IoU 0.5 with id 1: the smaller id, 5, wins
    assert match_masks(first, tie, 0.5) == [(1, 5)]


def test_match_masks_with_huge_ids():
    big = np.int64(2**40)
    first = np.where(square((8, 8), 0, 0, 4), big, 0)
    second = np.where(square((8, 8), 0, 0, 4), big + 3, 0)
    assert match_masks(first, second, 0.5) == [(int(big), int(big + 3))]


# -- link_stack (in memory) and link_and_renumber (streamed) ------------------------------


def test_link_stack_chains_and_numbers_by_first_slice():
    shape = (8, 8)
    labels = np.zeros((3, *shape), np.int64)
    labels[0][square(shape, 1, 1, 4)] = 10
    labels[1][square(shape, 1, 2, 4)] = 20  # IoU 0.6 with slice 0
    labels[2][square(shape, 2, 2, 4)] = 30  # IoU 0.6 with slice 1, 0.39 with slice 0: linked through slice 1
    labels[2][square(shape, 6, 6, 2)] = 31  # nothing above it
    linked = link_stack(labels, 0.5)
    assert linked.dtype == np.int32 and set(np.unique(linked)) == {0, 1, 2}
    assert (linked[labels == 10] == 1).all() and (linked[labels == 30] == 1).all() and (linked[labels == 31] == 2).all()
    unlinked = link_stack(labels, 0.7)  # above every IoU: nothing links, ids renumbered in order
    assert [int(unlinked[labels == i][0]) for i in (10, 20, 30, 31)] == [1, 2, 3, 4]
    np.testing.assert_array_equal(link_stack(labels, link_3d=False), unlinked)


def test_link_stack_4d_links_along_z_not_t():
    shape = (6, 6)
    labels = np.zeros((2, 2, *shape), np.int64)
    for flat, (t, z) in enumerate(np.ndindex(2, 2)):
        labels[t, z][square(shape, 1, 1, 4)] = flat + 1  # the same place at every t and z
    linked = link_stack(labels)
    assert [int(linked[t, z].max()) for t, z in np.ndindex(2, 2)] == [1, 1, 2, 2]


def test_single_slices_and_huge_ids_are_renumbered():
    plane = np.array([[0, 2**40], [7, 7]], np.int64)
    np.testing.assert_array_equal(link_stack(plane), [[0, 2], [1, 1]])
    np.testing.assert_array_equal(link_stack(plane[None]), [[[0, 2], [1, 1]]])


def test_numbering_by_slice():
    counts = [2, 0, 3]
    np.testing.assert_array_equal(slice_offsets(counts), [0, 2, 2])
    np.testing.assert_array_equal(offset_labels(np.array([[0, 1], [2, 0]]), 5), [[0, 6], [7, 0]])
    np.testing.assert_array_equal(relabel_in_order(np.array([[9, 0], [4, 9]])), [[2, 0], [1, 2]])


def test_ids_outside_the_count_are_a_clear_error():
    slices = np.array([[[0, 1]], [[3, 0]]])
    planes, _ = link_and_renumber(lambda k: slices[k], 2, (2,), link_3d=False)
    with pytest.raises(MobileSAMError, match="outside 0..2"):
        list(planes)


# -- streamed ------------------------------------------------------------------------


def _blob_slices(leading, size=24, seed=0):
    """Each slice's own labels (objects 1..n, as a slice is segmented); blobs drift slowly in z."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(leading))
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
            slices[flat][inside] = k + 1
    return np.stack([relabel_in_order(plane) for plane in slices])


@pytest.mark.parametrize("leading", [(), (1,), (5,), (2, 4)])
@pytest.mark.parametrize("link_3d", [True, False])
def test_streamed_slices_equal_the_stack_in_memory(leading, link_3d):
    """Slices read one or two at a time, numbered from their counts: the ids of the whole stack linked at once."""
    local = _blob_slices(leading or (1,))
    counts = [int(plane.max()) for plane in local]
    offsets = slice_offsets(counts)
    reads = []

    def read(flat):
        reads.append(flat)
        return offset_labels(local[flat], offsets[flat])

    planes, count = link_and_renumber(read, sum(counts), leading, link_3d=link_3d, link_iou=0.5)
    result = np.stack(list(planes)).reshape(*leading, *local.shape[-2:])
    # In memory, with any ids unique per slice (here far apart): the same labels.
    spaced = np.where(local > 0, local + np.arange(len(local))[:, None, None] * 1000, 0)
    expected = link_stack(spaced.reshape(result.shape), 0.5, link_3d=link_3d)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, expected)
    assert count == len(np.unique(expected)) - (0 in expected)
    assert max(np.bincount(reads)) <= 3  # each slice read at most once to link (twice: as current, as next) and once to write
