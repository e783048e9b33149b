"""The last-used "Segment everything" settings of this process.

The widget's "Segment everything" section writes them whenever a control
changes; the menu command Layers › Segment › Segment whole stack (MobileSAM)
reads them, so the command segments the way the user last tuned it.
Kept in memory only (one process, one set). Plain data: no torch, no Qt.
"""

from __future__ import annotations

from ..segment.params import EverythingParams

_LAST_USED = EverythingParams()


def last_used() -> EverythingParams:
    """The settings used last in this process (SAM's defaults until the widget changes them)."""
    return _LAST_USED


def remember(params: EverythingParams) -> None:
    """Make ``params`` the last-used settings."""
    global _LAST_USED
    if not isinstance(params, EverythingParams):
        raise TypeError(f"Expected EverythingParams, got {type(params).__name__}.")
    _LAST_USED = params
