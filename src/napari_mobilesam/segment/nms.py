"""Boxes of masks, their overlap, and non-maximum suppression, in plain vectorised torch.

Boxes are ``(x0, y0, x1, y1)`` with exclusive ends: a mask covering columns
``3..7`` has ``x0 = 3, x1 = 8``, so a one-pixel mask has area 1 (not 0), and
boxes scale with the image without off-by-one corrections.
"""

from __future__ import annotations

import torch

# Rows of the pairwise IoU computed at once: bounds the memory to CHUNK x N floats.
_IOU_CHUNK = 2048
# Rounds of the parallel NMS before falling back to the plain sequential pass.
_MAX_PARALLEL_ROUNDS = 64


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``(N, 4)`` boxes (zero for empty or inverted boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union ``(N, M)`` of ``(N, 4)`` and ``(M, 4)`` boxes; 0 where both are empty."""
    boxes1, boxes2 = boxes1.float(), boxes2.float()
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    sides = (bottom_right - top_left).clamp(min=0)
    intersection = sides[..., 0] * sides[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    A box is dropped when a kept box with a higher score (ties: the lower
    index wins) overlaps it with IoU ``> iou_threshold`` -- the rule of
    torchvision's ``nms``, without torchvision.

    The greedy pass is sequential in principle; here it is a fixed-point
    iteration on the whole suppression matrix. A box's fate depends only on
    better-ranked boxes, so each round settles at least one more box and the
    unique fixed point is the greedy answer; in practice a handful of rounds.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}."
        )
    count = boxes.shape[0]
    if count == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = boxes[order]
    # suppresses[i, j]: better-ranked box i would drop box j.
    suppresses = torch.cat(
        [box_iou(ranked[start : start + _IOU_CHUNK], ranked) > iou_threshold for start in range(0, count, _IOU_CHUNK)]
    )
    suppresses.triu_(diagonal=1)
    if not suppresses.any():
        return order
    keep = torch.ones(count, dtype=torch.bool, device=boxes.device)
    for _ in range(_MAX_PARALLEL_ROUNDS):
        updated = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(updated, keep):
            return order[keep]
        keep = updated
    return order[_sequential_keep(suppresses)]


def _sequential_keep(suppresses: torch.Tensor) -> torch.Tensor:
    """The textbook greedy pass, for the rare long suppression chains."""
    keep = torch.ones(suppresses.shape[0], dtype=torch.bool, device=suppresses.device)
    for i in range(suppresses.shape[0]):
        if keep[i]:
            keep &= ~suppresses[i]
    return keep


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` boolean masks -> ``(..., 4)`` boxes in pixels (exclusive ends); all zeros for an empty mask."""
    height, width = masks.shape[-2:]
    # max over uint8 is a fast vectorised reduction; any() over the row axis is not.
    as_bytes = masks.view(torch.uint8) if masks.dtype == torch.bool else (masks != 0).view(torch.uint8)
    rows = as_bytes.amax(dim=-1).bool()
    cols = as_bytes.amax(dim=-2).bool()
    y = torch.arange(height, device=masks.device)
    x = torch.arange(width, device=masks.device)
    y0 = torch.where(rows, y, height).amin(dim=-1)
    y1 = torch.where(rows, y + 1, 0).amax(dim=-1)
    x0 = torch.where(cols, x, width).amin(dim=-1)
    x1 = torch.where(cols, x + 1, 0).amax(dim=-1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).float()
    return boxes * (y1 > 0)[..., None]
