"""The one place that holds the model and the embedding cache: shared by the widget, the console and batch runs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam.cache.embedding_cache import EmbeddingCache
from napari_mobilesam.engine import session as session_module
from napari_mobilesam.engine.session import (
    Session,
    default_session,
    process_session,
    resolve_cache,
    resolve_predictor,
    set_default_session,
)


@pytest.fixture
def fresh_default(monkeypatch, tmp_path):
    """An empty default session whose disk cache lies in tmp_path; the previous one is put back."""
    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(tmp_path))
    previous = set_default_session(None)
    yield
    set_default_session(previous)


def test_default_session_is_one_instance_with_the_user_cache(fresh_default, tmp_path):
    import napari_mobilesam

    assert default_session() is default_session()
    assert resolve_cache() is default_session().cache
    assert default_session().cache.directory == tmp_path / "embeddings"
    assert napari_mobilesam.EmbeddingCache is EmbeddingCache
    assert not default_session().has_model and default_session().describe() == "weights: not loaded yet"


def test_the_widget_and_the_console_share_one_cache(fresh_default, recipe_model):
    """segment_stack from napari's console hits the embeddings the widget's session encoded, and vice versa."""
    from napari_mobilesam import segment_stack

    session = default_session()
    session.set_model(recipe_model, source="recipe")
    stack = np.random.default_rng(0).integers(0, 255, (2, 48, 48)).astype(np.uint8)
    session.cache.embedding(session.predictor(), stack[0], image_id="s", slice_index=0, n_slices=2)  # the widget
    misses = session.cache.stats["misses"]
    segment_stack(stack, image_id="s", points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert session.cache.stats["misses"] == misses + 1  # only slice 1 was encoded
    assert session.cache.stats["memory_hits"] >= 1


def test_resolve_predictor_prefers_what_it_is_given(fresh_default, recipe_model):
    from napari_mobilesam import Predictor

    given = Predictor(recipe_model)
    assert resolve_predictor(predictor=given) is given
    assert resolve_predictor(recipe_model).model is recipe_model
    default_session().set_model(recipe_model)
    assert resolve_predictor().model is recipe_model  # no model: the default session's, not a new load
    own = Session(cache=EmbeddingCache(directory=None))
    assert resolve_cache(own.cache) is own.cache


def test_predictors_of_a_session(recipe_model):
    import threading

    session = Session(recipe_model, EmbeddingCache(directory=None))
    assert session.predictor() is session.predictor()
    assert session.new_predictor() is not session.new_predictor()
    mine = session.thread_predictor()
    assert session.thread_predictor() is mine
    other = []
    thread = threading.Thread(target=lambda: other.append(session.thread_predictor()))
    thread.start()
    thread.join()
    assert other[0] is not mine and other[0].model is recipe_model


def test_process_session_loads_a_model_once_per_weights_and_device(tmp_path, monkeypatch):
    from recipe import save_recipe_weights

    monkeypatch.setattr(session_module, "_SESSIONS", {})
    monkeypatch.setattr(session_module, "_MODELS", {})
    weights = str(save_recipe_weights(tmp_path))
    first = process_session(weights, "cpu", None)
    assert process_session(weights, "cpu", None) is first
    other_cache = process_session(weights, "cpu", str(tmp_path / "emb"))
    assert other_cache is not first and other_cache.model() is first.model()
    assert other_cache.cache.directory == tmp_path / "emb" and first.cache.directory is None
    assert session_module.model_loads() == 1


def test_process_sessions_are_kept_per_model(monkeypatch, recipe_model):
    """A dask worker running two models keeps one session (and model) for each; a switch loads by name."""
    from napari_mobilesam.engine import weights

    loaded = []

    def fake_load(checkpoint=None, device=None, *, model=None, decoder=None):
        loaded.append((checkpoint, model, decoder))
        return recipe_model

    monkeypatch.setattr(weights, "load_model", fake_load)
    monkeypatch.setattr(session_module, "_SESSIONS", {})
    monkeypatch.setattr(session_module, "_MODELS", {})
    first = process_session("w.pt", "cpu", None, model_name="vit_t_lm", decoder="d.pt")
    assert process_session("w.pt", "cpu", None, model_name="vit_t_lm", decoder="d.pt") is first
    other = process_session("w.pt", "cpu", None, model_name="mobile_sam")
    assert other is not first and loaded == [("w.pt", "vit_t_lm", "d.pt"), ("w.pt", "mobile_sam", None)]

    session = Session(recipe_model, EmbeddingCache(directory=None))
    assert session.model_name == "custom"
    session.switch_model("vit_t_em_organelles")
    assert loaded[-1] == (None, "vit_t_em_organelles", None) and session.loads == 1


def test_the_model_loads_with_the_existing_objects_left_out_of_garbage_collections(monkeypatch, recipe_model):
    """So that a full collection of a GUI's heap never freezes the window while torch's objects are made."""
    import gc

    from napari_mobilesam.engine import weights

    seen = []

    def load_model(*args, **kwargs):
        seen.append(gc.get_freeze_count())
        return recipe_model

    monkeypatch.setattr(weights, "load_model", load_model)
    session = Session(cache=EmbeddingCache(directory=None))
    assert session.model() is recipe_model
    assert seen and seen[0] > 1000
    assert gc.get_freeze_count() == 0
