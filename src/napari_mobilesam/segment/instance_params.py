"""Settings of AIS and APG with micro-sam's names and defaults, checked once; micro-sam's per-model values.

Plain data (no torch): a GUI or command line can build and check them without
loading a model. Every field is a :func:`~napari_mobilesam.segment.param_fields.setting`
(type, range, help), so the API's check, the command line's options and the
widget's forms come from the same declaration; a bad value raises one
:class:`~napari_mobilesam.errors.MobileSAMError` that names it and its range.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MobileSAMError
from .param_fields import check_settings, from_kwargs, setting

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


# The three map thresholds AIS and APG share; the maps lie in 0..1. A distance threshold of 0 can seed
# nothing (distances are >= 0), a foreground one of 1 keeps nothing.
def _center_threshold():
    return setting(
        0.5, min=0.0, max=1.0, min_open=True, step=0.05, help="seeds: pixels whose distance to the centre is below this"
    )


def _boundary_threshold():
    return setting(
        0.5, min=0.0, max=1.0, min_open=True, step=0.05, help="seeds: ... and whose distance to the boundary is below this"
    )


def _foreground_threshold():
    return setting(
        0.5, min=0.0, max=1.0, max_open=True, step=0.05, help="foreground: pixels whose foreground probability is above this"
    )


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

    center_distance_threshold: float = _center_threshold()
    boundary_distance_threshold: float = _boundary_threshold()
    foreground_threshold: float = _foreground_threshold()
    foreground_smoothing: float = setting(
        1.0, min=0.0, max=100.0, step=0.1, help="Gaussian sigma in pixels for the foreground map; 0 turns it off"
    )
    distance_smoothing: float = setting(
        1.6, min=0.0, max=100.0, step=0.1, help="Gaussian sigma in pixels for both distance maps; 0 turns it off"
    )
    min_size: int = setting(0, min=0, help="objects with fewer pixels are removed; 0 keeps all")

    def __post_init__(self) -> None:
        check_settings(self)

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

    min_size: int = setting(
        25, min=0, help="masks of at most this many pixels, and smaller pieces of the label image, are dropped"
    )
    center_distance_threshold: float = _center_threshold()
    boundary_distance_threshold: float = _boundary_threshold()
    foreground_threshold: float = _foreground_threshold()
    multimasking: bool = setting(False, help="decode three masks per prompt and keep the best by predicted IoU")
    batch_size: int = setting(32, min=1, help="prompts decoded together; more is faster and takes more memory")
    nms_threshold: float = setting(
        0.9, min=0.0, max=1.0, step=0.01, help="a mask overlapping a better one by more than this is dropped"
    )
    intersection_over_min: bool = setting(False, help="measure overlap as intersection over the smaller mask")
    mask_threshold: float | None = setting(None, step=0.1, help="logit threshold of the masks; None is SAM's 0.0")
    refine_with_box_prompts: bool = setting(False, help="decode each mask again from its box (1 % larger per side)")

    def __post_init__(self) -> None:
        if isinstance(self.mask_threshold, str):
            raise MobileSAMError(
                f"mask_threshold={self.mask_threshold!r} (micro-sam's local Otsu threshold) is not supported; "
                "give a logit threshold such as 0.0, or None for SAM's default."
            )
        check_settings(self)

    @property
    def logit_threshold(self) -> float:
        """The mask threshold in effect (SAM's 0.0 for ``None``)."""
        return 0.0 if self.mask_threshold is None else float(self.mask_threshold)

    @classmethod
    def from_kwargs(cls, **params) -> APGParams:
        """Build from keyword arguments, with one clear error for an unknown name."""
        return from_kwargs(cls, "APG (automatic prompt generation)", params)
