"""The last-used "Segment everything" and encoder settings of this process.

The widget's "Segment everything" section writes them whenever a control
changes; the menu command Layers › Segment › Segment whole stack (MobileSAM)
reads them, so the command segments the way the user last tuned it. The
encoder's precision is remembered the same way: a new widget starts with it.
Kept in memory only (one process, one set). Plain data: no torch, no Qt.
"""

from __future__ import annotations

from ..engine.precision import EncoderSettings
from ..segment.params import EverythingParams

_LAST_USED = EverythingParams()
_LAST_ENCODER = EncoderSettings()


def last_used() -> EverythingParams:
    """The settings used last in this process (SAM's defaults until the widget changes them)."""
    return _LAST_USED


def remember(params: EverythingParams) -> None:
    """Make ``params`` the last-used settings."""
    global _LAST_USED
    if not isinstance(params, EverythingParams):
        raise TypeError(f"Expected EverythingParams, got {type(params).__name__}.")
    _LAST_USED = params


def last_encoder() -> EncoderSettings:
    """The encoder settings used last in this process (float32 until the widget changes them)."""
    return _LAST_ENCODER


def remember_encoder(settings: EncoderSettings) -> None:
    """Make ``settings`` the last-used encoder settings."""
    global _LAST_ENCODER
    if not isinstance(settings, EncoderSettings):
        raise TypeError(f"Expected EncoderSettings, got {type(settings).__name__}.")
    _LAST_ENCODER = settings
