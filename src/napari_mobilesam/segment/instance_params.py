"""Settings of AIS and APG with micro-sam's names and defaults, checked once; micro-sam's per-model values.

Plain data (numpy only, no torch): a GUI or command line can build and check
them without loading a model. Each bad value raises one
:class:`~napari_mobilesam.errors.MobileSAMError` that names it and its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import MobileSAMError
from .param_fields import from_kwargs

# micro-sam 1.8.14, micro_sam/_model_settings.py, AIS_SETTINGS (lines 3-8 and 28-33), with the
# parameter names of InstanceSegmentationWithDecoder.generate. Its annotator (sam_annotator/util.py,
# _sync_autosegment_widget, lines 729-737) applies only the two thresholds from this table; min_size
# comes from the widget's own default, also 100 (sam_annotator/_widgets.py line 1787), and
# distance_smoothing stays at generate()'s 1.6 there. Here the whole row is the model's default.
MODEL_DEFAULTS: dict[str, dict[str, float | int]] = {
    "vit_t_lm": {
        "center_distance_threshold": 0.5,
        "boundary_distance_threshold": 0.5,
        "distance_smoothing": 2.0,
        "min_size": 100,
    },
    "vit_t_em_organelles": {
        "center_distance_threshold": 0.4,
        "boundary_distance_threshold": 0.5,
        "distance_smoothing": 1.2,
        "min_size": 100,
    },
}


def _number(owner: str, name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
    ):
        raise MobileSAMError(f"{owner}: {name} must be a finite number, got {value!r}.")
    return float(value)


def _in_range(owner: str, name: str, value, low: float, high: float, low_open: bool, high_open: bool) -> None:
    number = _number(owner, name, value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise MobileSAMError(f"{owner}: {name} must be in {interval}, got {value!r}.")


def _count(owner: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise MobileSAMError(f"{owner}: {name} must be a whole number >= {minimum}, got {value!r}.")


def _check_thresholds(owner: str, params) -> None:
    """The three map thresholds shared by AIS and APG; the maps lie in 0..1."""
    # A distance threshold of 0 can seed nothing (distances are >= 0), a foreground one of 1 keeps nothing.
    _in_range(owner, "center_distance_threshold", params.center_distance_threshold, 0.0, 1.0, True, False)
    _in_range(owner, "boundary_distance_threshold", params.boundary_distance_threshold, 0.0, 1.0, True, False)
    _in_range(owner, "foreground_threshold", params.foreground_threshold, 0.0, 1.0, False, True)


@dataclass(frozen=True)
class WatershedParams:
    """AIS settings: the arguments of micro-sam's ``InstanceSegmentationWithDecoder.generate``.

    Attributes:
        center_distance_threshold: seeds where the (smoothed) centre distance is below this, 0..1.
        boundary_distance_threshold: ... and the (smoothed) boundary distance is below this, 0..1.
        foreground_threshold: foreground where the (smoothed) foreground probability is above this.
        foreground_smoothing: Gaussian sigma in pixels for the foreground map (0 = none).
        distance_smoothing: Gaussian sigma in pixels for both distance maps (0 = none).
        min_size: objects with fewer pixels are removed (0 = keep all).
    """

    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_threshold: float = 0.5
    foreground_smoothing: float = 1.0
    distance_smoothing: float = 1.6
    min_size: int = 0

    def __post_init__(self) -> None:
        owner = "AIS"
        _check_thresholds(owner, self)
        for name in ("foreground_smoothing", "distance_smoothing"):
            _in_range(owner, name, getattr(self, name), 0.0, 100.0, False, False)
        _count(owner, "min_size", self.min_size, 0)

    @classmethod
    def from_kwargs(cls, **params) -> WatershedParams:
        """Build from keyword arguments, with one clear error for an unknown name."""
        return from_kwargs(cls, "AIS (the watershed)", params)

    @classmethod
    def for_model(cls, model_name: str, **params) -> WatershedParams:
        """micro-sam's settings for ``model_name`` (:data:`MODEL_DEFAULTS`), then ``params`` on top."""
        defaults = MODEL_DEFAULTS.get(model_name)
        if defaults is None:
            raise MobileSAMError(
                f"No AIS settings for the model {model_name!r}; known: {', '.join(MODEL_DEFAULTS)}. "
                "Pass the settings yourself with WatershedParams(...)."
            )
        return cls.from_kwargs(**{**defaults, **params})


@dataclass(frozen=True)
class APGParams:
    """APG settings: the arguments of micro-sam's ``AutomaticPromptGenerator.generate``.

    Attributes:
        min_size: masks with at most this many pixels are dropped, and so are
            pieces of the final label image smaller than this.
        center_distance_threshold, boundary_distance_threshold, foreground_threshold:
            as in :class:`WatershedParams` (applied to the unsmoothed maps).
        multimasking: decode three masks per prompt and keep the one with the best predicted IoU.
        batch_size: prompts decoded together.
        nms_threshold: a mask overlapping a better-scored one with mask IoU above this is dropped.
        intersection_over_min: measure the overlap as intersection over the smaller mask's area.
        mask_threshold: logit threshold for the masks (micro-sam's ``None`` means SAM's 0.0).
        refine_with_box_prompts: decode again from each mask's box (extended by 1 % per side).
    """

    min_size: int = 25
    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_threshold: float = 0.5
    multimasking: bool = False
    batch_size: int = 32
    nms_threshold: float = 0.9
    intersection_over_min: bool = False
    mask_threshold: float | None = None
    refine_with_box_prompts: bool = False

    def __post_init__(self) -> None:
        owner = "APG"
        _count(owner, "min_size", self.min_size, 0)
        _check_thresholds(owner, self)
        _count(owner, "batch_size", self.batch_size, 1)
        _in_range(owner, "nms_threshold", self.nms_threshold, 0.0, 1.0, False, False)
        for name in ("multimasking", "intersection_over_min", "refine_with_box_prompts"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise MobileSAMError(f"{owner}: {name} must be True or False, got {getattr(self, name)!r}.")
        if isinstance(self.mask_threshold, str):
            raise MobileSAMError(
                f"{owner}: mask_threshold={self.mask_threshold!r} (micro-sam's local Otsu threshold) is not "
                "supported; give a logit threshold such as 0.0, or None for SAM's default."
            )
        if self.mask_threshold is not None:
            _number(owner, "mask_threshold", self.mask_threshold)

    @property
    def logit_threshold(self) -> float:
        """The mask threshold in effect (SAM's 0.0 for ``None``)."""
        return 0.0 if self.mask_threshold is None else float(self.mask_threshold)

    @classmethod
    def from_kwargs(cls, **params) -> APGParams:
        """Build from keyword arguments, with one clear error for an unknown name."""
        return from_kwargs(cls, "APG (automatic prompt generation)", params)
