"""Shared fixtures: the recipe-weights model (built once per session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def recipe_model():
    """MobileSAM with the seed-0 recipe weights of the reference fixtures, eval mode, CPU."""
    from napari_mobilesam.model import build_mobile_sam
    from recipe import recipe_state_dict

    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0), strict=True)
    return model


@pytest.fixture
def predictor(recipe_model):
    from napari_mobilesam import Predictor

    return Predictor(recipe_model)
