"""Telling the user: every failure becomes a napari notification, never a traceback dialog."""

from __future__ import annotations

import functools
import logging

from napari.utils.notifications import show_error

from ..errors import MobileSAMError

logger = logging.getLogger("napari_mobilesam")


def report(error: Exception, doing: str) -> None:
    """Notify ``error``; the user's own mistakes (:class:`MobileSAMError`) already say what to do."""
    if isinstance(error, MobileSAMError):
        show_error(f"MobileSAM: {error}")
    else:
        logger.error("MobileSAM failed while %s", doing, exc_info=error)
        show_error(f"MobileSAM failed while {doing}: {type(error).__name__}: {error}")


def reporting(doing: str):
    """Decorate a callback of napari's events: an exception becomes a notification, not napari's traceback dialog."""

    def decorate(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as error:  # a slot must never raise into napari's event loop
                report(error, doing)
                return None

        return call

    return decorate
