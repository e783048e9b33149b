"""Stacks encoded in batches: the same labels as one slice at a time, a cancel before each batch's encode."""

from __future__ import annotations

import numpy as np

from napari_mobilesam import Predictor, segment_stack
from napari_mobilesam.cache.embedding_cache import EmbeddingCache
from napari_mobilesam.segment.stack import SliceLabels, SliceStep, iter_segment_stack

SETTINGS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


class CountingPredictor(Predictor):
    """Records the number of slices of each encoder call."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.encodes: list[int] = []

    def _encode(self, rgbs):
        self.encodes.append(len(rgbs))
        return super()._encode(rgbs)


def stack() -> np.ndarray:
    rng = np.random.default_rng(2)
    planes = np.zeros((3, 48, 64), dtype=np.uint16)
    for z in range(3):
        planes[z, 10 + z : 30 + z, 20:44] = 3000
    return planes + rng.integers(0, 200, planes.shape, dtype=np.uint16)


def test_batches_give_the_labels_of_one_slice_at_a_time(recipe_model):
    one = CountingPredictor(recipe_model)
    labels = {}
    for batch, predictor in ((1, one), (3, CountingPredictor(recipe_model))):
        results = iter_segment_stack(
            stack(), predictor=predictor, cache=EmbeddingCache(directory=None), encode_batch=batch, **SETTINGS
        )
        labels[batch] = np.stack([r.labels for r in results])
        assert predictor.encodes == ([1, 1, 1] if batch == 1 else [3])
    np.testing.assert_array_equal(labels[1], labels[3])
    whole = segment_stack(stack(), recipe_model, cache=EmbeddingCache(directory=None), link_3d=False, **SETTINGS)
    assert whole.shape == (3, 48, 64)


def test_a_cancel_before_the_next_batch_encodes_nothing_more(recipe_model):
    predictor = CountingPredictor(recipe_model)
    work = iter_segment_stack(
        stack(), predictor=predictor, cache=EmbeddingCache(directory=None), encode_batch=2, steps=True, **SETTINGS
    )
    seen = []
    for item in work:
        seen.append(item)
        if isinstance(item, SliceLabels) and item.slice_index == 1:
            break  # the first batch (slices 0 and 1) is done
    work.close()
    assert predictor.encodes == [2]
    assert isinstance(seen[0], SliceStep) and (seen[0].slice_index, seen[0].done, seen[0].total) == (0, 0, 0)
