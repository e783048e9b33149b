"""The GUI's last-used settings start from the engine's (SAM's) defaults."""

from __future__ import annotations

from dataclasses import replace

from napari_mobilesam.interactive.settings import last_used, remember
from napari_mobilesam.segment.params import EverythingParams


def test_last_used_starts_from_the_engine_defaults():
    assert last_used() == EverythingParams() or isinstance(last_used(), EverythingParams)
    assert "sampler" not in EverythingParams().kwargs() and EverythingParams().sampler == "grid"


def test_remember_last_used():
    before = last_used()
    try:
        remember(replace(EverythingParams(), sampler="boxes", points_per_side=8))
        assert last_used().sampler == "boxes" and last_used().kwargs()["points_per_side"] == 8
    finally:
        remember(before)
