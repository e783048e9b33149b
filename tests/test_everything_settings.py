"""The GUI's last-used settings start from the engine's (SAM's) defaults."""

from __future__ import annotations

from dataclasses import fields

from napari_mobilesam.everything import EverythingParams
from napari_mobilesam.everything_settings import EverythingSettings, last_used, remember


def test_defaults_match_the_engine():
    engine = EverythingParams()
    for name, value in EverythingSettings().params().items():
        assert getattr(engine, name) == value, name
    assert {f.name for f in fields(EverythingSettings)} - {"sampler"} <= {f.name for f in fields(EverythingParams)}


def test_remember_last_used():
    before = last_used()
    try:
        remember(EverythingSettings(sampler="boxes", points_per_side=8))
        assert last_used().sampler == "boxes" and last_used().params()["points_per_side"] == 8
    finally:
        remember(before)
