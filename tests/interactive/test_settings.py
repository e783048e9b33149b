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


def test_ais_is_run_by_default_for_a_model_with_a_decoder_until_a_sampler_is_chosen(monkeypatch):
    from napari_mobilesam.interactive import settings

    monkeypatch.setattr(settings, "_LAST_USED", EverythingParams())
    monkeypatch.setattr(settings, "_CHOSEN", False)
    monkeypatch.setattr(settings, "_INSTANCE", {})
    params, instance = settings.settings_for_run("vit_t_lm", has_decoder=True)
    assert params.sampler == "ais" and (instance.min_size, instance.distance_smoothing) == (100, 2.0)
    assert settings.settings_for_run("mobile_sam", has_decoder=False) == (EverythingParams(), None)
    settings.remember_instance("vit_t_lm", "ais", replace(instance, min_size=7))
    settings.remember(EverythingParams(sampler="grid"))  # chosen: the grid stays
    assert settings.settings_for_run("vit_t_lm", has_decoder=True)[0].sampler == "grid"
    settings.remember(EverythingParams(sampler="ais"))
    assert settings.settings_for_run("vit_t_lm", has_decoder=True)[1].min_size == 7
