"""The settings of segment everything (:class:`EverythingParams`): the sampler, and SAM's names and defaults, checked once.

Plain data (numpy only, no torch): the command line and the GUI build and
check them without loading the pipeline of :mod:`napari_mobilesam.segment.everything`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import MobileSAMError

SAMPLERS = ("grid", "boxes")


@dataclass(frozen=True)
class EverythingParams:
    """Settings of :func:`~napari_mobilesam.segment.everything.segment_everything`; names and defaults are those of SAM's generator.

    Attributes:
        sampler: ``"grid"`` (SAM's point grid) or ``"boxes"`` (box proposals, MobileSAMv2).
        points_per_side: the grid sampler prompts ``points_per_side**2`` points.
        points_per_batch: point prompts decoded together.
        pred_iou_thresh: keep masks whose predicted IoU is above this.
        stability_score_thresh: keep masks whose stability score is at least this.
        stability_score_offset: the logit offset of the stability score
            (see :func:`~napari_mobilesam.segment.everything.stability_score`).
        box_nms_thresh: masks whose boxes overlap a better mask's by more than this IoU are dropped.
        min_mask_region_area: > 0: fill holes and remove islands smaller than this
            many pixels in each mask, and drop labels left with fewer visible pixels.
        boxes_per_batch: box prompts decoded together (``"boxes"`` sampler; MobileSAMv2
            uses 320 on a GPU, the memory grows with it).
    """

    sampler: str = "grid"
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    boxes_per_batch: int = 64

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise MobileSAMError(
                f"Unknown sampler {self.sampler!r}; choose 'grid' (SAM's point grid) or 'boxes' (box proposals)."
            )
        for name in ("points_per_side", "points_per_batch", "boxes_per_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise MobileSAMError(f"{name} must be a whole number >= 1, got {value!r}.")
        if not isinstance(self.min_mask_region_area, (int, np.integer)) or self.min_mask_region_area < 0:
            raise MobileSAMError(
                f"min_mask_region_area must be a whole number >= 0, got {self.min_mask_region_area!r}."
            )
        for name in ("pred_iou_thresh", "stability_score_thresh", "stability_score_offset", "box_nms_thresh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise MobileSAMError(f"{name} must be a finite number, got {value!r}.")
        if not 0.0 < self.box_nms_thresh <= 1.0:
            raise MobileSAMError(f"box_nms_thresh must be in (0, 1], got {self.box_nms_thresh}.")

    @classmethod
    def from_kwargs(cls, **params) -> EverythingParams:
        """Build from keyword arguments, with one clear error for a name SAM's generator does not use here."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise MobileSAMError(
                f"Unknown setting(s) {', '.join(unknown)} for segment_everything; the settings are {', '.join(known)}."
            )
        return cls(**params)

    def kwargs(self) -> dict:
        """Every setting but the sampler, as keyword arguments of ``segment_everything`` (besides ``sampler=``)."""
        params = asdict(self)
        del params["sampler"]
        return params
