"""Prompts placed on a stack in napari coordinates become labels, by the documented rules."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam import EmbeddingCache, MobileSAMError, segment_from_prompts
from napari_mobilesam.segment.stack_prompts import _group


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, (3, 64, 64)).clip(0).astype(np.uint16)
    data[:, 10:30, 10:30] += 1000
    data[:, 40:60, 35:60] += 1500
    return data


def test_grouping_rules():
    groups = _group(
        points=[[0, 20, 20], [0, 50, 50], [0, 5, 60], [1, 20, 20]],
        labels=[1, 1, 0, 1],
        boxes=[[0, 40, 35, 60, 60]],
        leading=(3,),
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
    ],
)
def test_bad_prompts(recipe_model, stack, kwargs, message):
    with pytest.raises(MobileSAMError, match=message):
        segment_from_prompts(stack, model=recipe_model, cache=EmbeddingCache(directory=None), **kwargs)
