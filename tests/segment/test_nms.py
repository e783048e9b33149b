"""Box IoU, greedy NMS and mask boxes: checked against plain reference code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mobilesam.segment.nms import box_area, box_iou, masks_to_boxes, nms


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """The textbook greedy loop, one box at a time."""
    iou = box_iou(boxes, boxes).tolist()
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for i in order:
        if all(iou[i][j] <= threshold for j in kept):
            kept.append(i)
    return kept


def random_boxes(count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 100, (count, 2))
    sides = rng.uniform(1, 30, (count, 2))
    return torch.from_numpy(np.concatenate([corners, corners + sides], axis=1)).float()


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [2.0, 2.0, 4.0, 4.0]])
    np.testing.assert_allclose(box_iou(a, b).numpy(), [[1.0, 50 / 150, 0.0, 4 / 100]], rtol=1e-6)
    assert box_iou(a, b).shape == (1, 4)


def test_box_iou_of_empty_boxes_is_zero():
    empty = torch.zeros(2, 4)
    assert torch.equal(box_iou(empty, empty), torch.zeros(2, 2))
    assert torch.equal(box_area(torch.tensor([[5.0, 5.0, 3.0, 9.0]])), torch.tensor([0.0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_nms_equals_the_greedy_loop(seed, threshold):
    boxes = random_boxes(150, seed)
    scores = torch.from_numpy(np.random.default_rng(seed + 10).uniform(0, 1, 150)).float()
    assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)


def test_nms_ties_keep_the_lower_index():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3 + [[50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]


def test_nms_long_suppression_chain():
    # Each box overlaps the next by IoU 0.9 (and the one after by 0.81): greedy keeps every other
    # one; the chain is longer than the parallel rounds, so the sequential fallback answers.
    count = 200
    x0 = torch.arange(count, dtype=torch.float32) * 1.0
    boxes = torch.stack([x0, torch.zeros(count), x0 + 19.0, torch.full((count,), 10.0)], dim=1)
    scores = torch.linspace(1.0, 0.0, count)
    kept = nms(boxes, scores, 0.85)
    assert kept.tolist() == list(range(0, count, 2)) == reference_nms(boxes, scores, 0.85)


def test_nms_empty_and_shape_errors():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="boxes"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_masks_to_boxes_exclusive_ends():
    masks = torch.zeros(2, 3, 8, 10, dtype=torch.bool)
    masks[0, 0, 2:5, 3:8] = True
    masks[0, 1, 7, 9] = True
    masks[1, 2, 0, 0] = True
    masks[1, 2, 4, 6] = True
    boxes = masks_to_boxes(masks)
    assert boxes.shape == (2, 3, 4)
    assert boxes[0, 0].tolist() == [3, 2, 8, 5]
    assert boxes[0, 1].tolist() == [9, 7, 10, 8]
    assert boxes[0, 2].tolist() == [0, 0, 0, 0]  # empty
    assert boxes[1, 2].tolist() == [0, 0, 7, 5]
