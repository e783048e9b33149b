"""The prompts of segment everything and what the decoder returns for them.

The ``"grid"`` sampler prompts the points of :func:`point_grid`; the
``"boxes"`` sampler prompts the boxes of a proposer (by default
:func:`default_proposer`), checked and clipped to the image. Either is cut
into batches of :class:`~napari_mobilesam.engine.prompts.Prompts`, and each batch's
decoded logits and IoUs are checked against the decoder's contract before
:mod:`napari_mobilesam.segment.everything` filters them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..engine.prompts import LOW_RES_SHAPE, Prompts
from ..errors import MobileSAMError


def point_grid(points_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` ``(x, y)`` in [0, 1]: the centres of an n x n grid of cells, row by row (SAM's grid)."""
    centres = (np.arange(points_per_side) + 0.5) / points_per_side
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


_DEFAULT_PROPOSER = None


def default_proposer():
    """The built-in proposer, one per process, remembering the boxes of slices it has seen."""
    global _DEFAULT_PROPOSER
    if _DEFAULT_PROPOSER is None:
        from .box_proposals import ForegroundBoxProposer, RememberingProposer

        _DEFAULT_PROPOSER = RememberingProposer(ForegroundBoxProposer())
    return _DEFAULT_PROPOSER


def prompt_batches(values: np.ndarray, size: int) -> list[np.ndarray]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def point_prompts(coords: np.ndarray) -> Prompts:
    count = len(coords)
    return Prompts(coords[:, None, :], np.ones((count, 1), dtype=np.int64), None, None, batched=True)


def box_prompts(boxes: np.ndarray) -> Prompts:
    return Prompts(None, None, boxes, None, batched=True)


def check_boxes(boxes, original_size: tuple[int, int]) -> np.ndarray:
    try:
        boxes = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise MobileSAMError("The proposer must return an (N, 4) array of (x0, y0, x1, y1) boxes.") from None
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise MobileSAMError(f"The proposer must return finite (N, 4) (x0, y0, x1, y1) boxes, got shape {boxes.shape}.")
    height, width = original_size
    boxes = np.clip(boxes, 0.0, [width, height, width, height])
    return boxes[(boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])]


def check_decoded(decoded, count: int, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    low_res, iou = (torch.as_tensor(value) for value in decoded)
    channels = 3 if multimask else 1
    if low_res.shape != (count, channels, *LOW_RES_SHAPE) or iou.shape != (count, channels):
        raise MobileSAMError(
            f"The decoder returned logits {tuple(low_res.shape)} and IoU {tuple(iou.shape)}; expected "
            f"({count}, {channels}, 256, 256) and ({count}, {channels}) for {count} prompts."
        )
    return low_res, iou
