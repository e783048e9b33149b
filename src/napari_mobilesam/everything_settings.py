"""The last-used "Segment everything" settings of this process.

The widget's "Segment everything" section writes them whenever a control
changes; the menu command Layers › Segment › Segment whole stack (MobileSAM)
reads them, so the command segments the way the user last tuned it.
Kept in memory only (one process, one set). Plain data: no torch, no Qt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .everything_params import EverythingParams


@dataclass(frozen=True)
class EverythingSettings:
    """The sampler and main parameters of :func:`~napari_mobilesam.segment_everything`.

    Names and defaults are those of :class:`~napari_mobilesam.everything.EverythingParams` (taken from it)
    (SAM's automatic mask generator); the other parameters keep their defaults.
    Values are checked when a run starts.
    """

    sampler: str = "grid"
    points_per_side: int = EverythingParams.points_per_side
    pred_iou_thresh: float = EverythingParams.pred_iou_thresh
    stability_score_thresh: float = EverythingParams.stability_score_thresh
    box_nms_thresh: float = EverythingParams.box_nms_thresh
    min_mask_region_area: int = EverythingParams.min_mask_region_area

    def params(self) -> dict:
        """The keyword arguments for ``segment_everything`` / ``iter_segment_stack`` besides ``sampler``."""
        params = asdict(self)
        del params["sampler"]
        return params


_LAST_USED = EverythingSettings()


def last_used() -> EverythingSettings:
    """The settings used last in this process (SAM's defaults until the section changes them)."""
    return _LAST_USED


def remember(settings: EverythingSettings) -> None:
    """Make ``settings`` the last-used ones."""
    global _LAST_USED
    if not isinstance(settings, EverythingSettings):
        raise TypeError(f"Expected EverythingSettings, got {type(settings).__name__}.")
    _LAST_USED = settings
