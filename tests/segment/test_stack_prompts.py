"""Prompts placed on a stack in napari coordinates become labels, by the documented rules."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam import EmbeddingCache, MobileSAMError, segment_from_prompts
from napari_mobilesam.segment.prompt_groups import group_prompts


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, (3, 64, 64)).clip(0).astype(np.uint16)
    data[:, 10:30, 10:30] += 1000
    data[:, 40:60, 35:60] += 1500
    return data


def test_grouping_rules():
    groups = group_prompts(
        (3, 64, 64),
        points=[[0, 20, 20], [0, 50, 50], [0, 5, 60], [1, 20, 20]],
        labels=[1, 1, 0, 1],
        boxes=[[0, 40, 35, 60, 60]],
    )
    assert sorted(groups) == [(0,), (1,)]
    first = groups[(0,)]
    assert len(first.boxes) == 1 and first.box_points[0] == [(50.0, 50.0, 1)]  # (x, y, label) inside the box
    assert first.points == [(20.0, 20.0, 1), (60.0, 5.0, 0)]
    np.testing.assert_array_equal(first.boxes[0], [35, 40, 60, 60])  # (x0, y0, x1, y1)


def test_labels_follow_slices_and_never_overlap(recipe_model, stack):
    cache = EmbeddingCache(directory=None)
    points = np.array([[0, 20, 20], [0, 50, 47], [2, 20, 20]], dtype=float)
    labels = segment_from_prompts(stack, points_zyx=points, model=recipe_model, cache=cache)
    assert labels.shape == stack.shape and labels.dtype == np.int32
    assert not labels[1].any()  # no prompt on slice 1
    ids_0 = set(np.unique(labels[0])) - {0}
    ids_2 = set(np.unique(labels[2])) - {0}
    assert ids_0 <= {1, 2} and ids_2 <= {3} and ids_0.isdisjoint(ids_2)
    again = segment_from_prompts(stack, points_zyx=points, model=recipe_model, cache=cache)
    np.testing.assert_array_equal(labels, again)
    assert cache.stats["misses"] == 2  # only the prompted slices were encoded, once


def test_one_object_for_all_points(recipe_model, stack):
    points = np.array([[0, 20, 20], [0, 50, 47]], dtype=float)
    labels = segment_from_prompts(
        stack, points_zyx=points, model=recipe_model, cache=EmbeddingCache(directory=None), one_object_per_point=False
    )
    assert set(np.unique(labels)) <= {0, 1}


def test_boxes_on_a_2d_image(recipe_model, stack):
    labels = segment_from_prompts(
        stack[0], boxes=[[10, 10, 30, 30], [40, 35, 60, 60]], model=recipe_model, cache=EmbeddingCache(directory=None)
    )
    assert labels.shape == (64, 64)
    assert set(np.unique(labels)) <= {0, 1, 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "points_zyx and/or boxes"),
        ({"points_zyx": [[5, 10, 10]]}, "outside the stack"),
        ({"points_zyx": [[0, np.nan, 10]]}, "NaN"),
        ({"points_zyx": [[0, 10, 10]], "labels": [1, 0]}, "one label"),
        # One rule for every input: what check_prompts refuses on an image is refused on a stack.
        ({"points_zyx": [[3, 3]]}, r"points must have 3 coordinates per row, \(z, y, x\).*got an array of shape \(1, 2\)"),
        ({"points_zyx": [[0, 1, 3, 3]]}, "3 coordinates per row"),
        ({"boxes": [[0, 10, 10, 20]]}, r"boxes must have 5 coordinates per row, \(z, y0, x0, y1, x1\)"),
        ({"boxes": [[0, 10, 50, 40, 20]]}, r"Box 1 \(z=0, y0=10, x0=50, y1=40, x1=20\) has y1 < y0 or x1 < x0"),
        ({"boxes": [[1, 100, 100, 140, 140]]}, r"On slice z=1: Box \(x0=100, y0=100, x1=140, y1=140\) lies entirely outside"),
        ({"points_zyx": [[0, 10, 90]]}, r"On slice z=0: Point \(x=90, y=10\) lies outside the 64x64 image"),
        ({"points_zyx": [[0, 10, 10], [2, 5, 5]], "labels": [0, 0]}, r"On slice z=0 there are only negative points \(1\)"),
        (
            {"points_zyx": [[0, 5, 5]], "labels": [0], "boxes": [[0, 40, 35, 60, 60]]},
            "negative point.* outside every box and no positive point",
        ),
        ({"points_zyx": [[0, 10, 10]], "labels": [2]}, "1 \\(positive\\) or 0"),
    ],
)
def test_bad_prompts(recipe_model, stack, kwargs, message):
    with pytest.raises(MobileSAMError, match=message):
        segment_from_prompts(stack, model=recipe_model, cache=EmbeddingCache(directory=None), **kwargs)


def test_bad_prompts_are_refused_before_any_slice_is_read(stack):
    """The rules are checked on every prompt first: a mistake on the last slice costs no encoding."""
    from support.lazy import Unreadable

    with pytest.raises(MobileSAMError, match="only negative points"):
        segment_from_prompts(Unreadable((3, 64, 64)), points_zyx=[[0, 20, 20], [2, 5, 5]], labels=[1, 0], model=object())


def test_a_huge_lazy_stack_is_refused_before_it_is_read():
    from support.lazy import Unreadable

    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        segment_from_prompts(Unreadable((2, 20000, 20000)), points_zyx=[[0, 5, 5]], model=object())


def test_a_single_point_row_and_a_2d_image(recipe_model, stack):
    labels = segment_from_prompts(stack[0], points_zyx=[20, 20], model=recipe_model, cache=EmbeddingCache(directory=None))
    assert labels.shape == (64, 64) and labels.max() == 1


def test_empty_prompts_warn_and_give_empty_labels(stack):
    with pytest.warns(UserWarning, match="No prompts"):
        labels = segment_from_prompts(stack, points_zyx=np.zeros((0, 3)), model=object())
    assert labels.shape == stack.shape and not labels.any()
