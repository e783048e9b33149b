"""The last-used "Segment everything" and encoder settings of this process.

The widget's "Segment everything" section writes them whenever a control
changes; the menu command Layers › Segment › Segment whole stack (MobileSAM)
reads them, so the command segments the way the user last tuned it. The AIS
and APG settings are kept per model, starting from micro-sam's values for it
(:func:`~napari_mobilesam.segment.params.settings_for_model`). The
encoder's precision is remembered the same way: a new widget starts with it.
Kept in memory only (one process, one set). Plain data: no torch, no Qt.
"""

from __future__ import annotations

from dataclasses import replace

from ..engine.precision import EncoderSettings
from ..segment.params import INSTANCE_SAMPLERS, EverythingParams, settings_for_model

_LAST_USED = EverythingParams()
_CHOSEN = False  # whether a sampler was chosen (by the widget) yet
_INSTANCE: dict[tuple[str, str], object] = {}  # (model name, "ais"/"apg") -> its settings
_LAST_ENCODER = EncoderSettings()


def last_used() -> EverythingParams:
    """The settings used last in this process (SAM's defaults until the widget changes them)."""
    return _LAST_USED


def remember(params: EverythingParams) -> None:
    """Make ``params`` the last-used settings."""
    global _LAST_USED, _CHOSEN
    if not isinstance(params, EverythingParams):
        raise TypeError(f"Expected EverythingParams, got {type(params).__name__}.")
    _LAST_USED, _CHOSEN = params, True


def instance_settings(model_name: str, sampler: str):
    """The ``"ais"``/``"apg"`` settings last used with ``model_name``, else micro-sam's for that model."""
    found = _INSTANCE.get((model_name, sampler))
    return found if found is not None else settings_for_model(sampler, model_name)


def remember_instance(model_name: str, sampler: str, settings) -> None:
    """Make ``settings`` the last-used ``"ais"``/``"apg"`` settings of ``model_name``."""
    _INSTANCE[(model_name, sampler)] = settings


def settings_for_run(model_name: str, has_decoder: bool):
    """``(EverythingParams, AIS/APG settings or None)`` a run uses: the last-used ones, with AIS chosen
    by default for a model with a decoder until a sampler has been chosen."""
    params = _LAST_USED
    if not _CHOSEN and has_decoder and params.sampler not in INSTANCE_SAMPLERS:
        params = replace(params, sampler="ais")
    if params.sampler not in INSTANCE_SAMPLERS:
        return params, None
    return params, instance_settings(model_name, params.sampler)


def last_encoder() -> EncoderSettings:
    """The encoder settings used last in this process (float32 until the widget changes them)."""
    return _LAST_ENCODER


def remember_encoder(settings: EncoderSettings) -> None:
    """Make ``settings`` the last-used encoder settings."""
    global _LAST_ENCODER
    if not isinstance(settings, EncoderSettings):
        raise TypeError(f"Expected EncoderSettings, got {type(settings).__name__}.")
    _LAST_ENCODER = settings
