"""segment_everything with sampler="ais"/"apg": the same labels as instance_maps + watershed_from_maps /
segment_apg run directly, their settings kept apart from SAM's, the maps cached beside the embeddings, and stacks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam import EmbeddingCache, Predictor, segment_everything, segment_stack
from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.segment.apg import segment_apg
from napari_mobilesam.segment.instance_maps import instance_maps
from napari_mobilesam.segment.instance_params import APGParams, WatershedParams
from napari_mobilesam.segment.instance_watershed import watershed_from_maps
from napari_mobilesam.segment.linking import relabel_in_order
from napari_mobilesam.segment.params import EverythingParams, sampler_settings, settings_for_model
from napari_mobilesam.segment.stack import segment_slice
from support.ais_reference import our_embedding_and_maps, recipe_instance_decoder, reference
from support.instance_stand_in import StandInDecoder, blobs, with_decoder


@pytest.fixture(scope="module")
def stand_in_model(recipe_model):
    return with_decoder(recipe_model, StandInDecoder())


# -- settings ---------------------------------------------------------------------------------------


def test_each_sampler_takes_its_own_settings():
    assert sampler_settings("grid", {"points_per_side": 8})[0].points_per_side == 8
    everything, ais = sampler_settings("ais", {"min_size": 10, "distance_smoothing": 2.0})
    assert everything == EverythingParams(sampler="ais") and ais == WatershedParams(min_size=10, distance_smoothing=2.0)
    assert sampler_settings("apg", {"nms_threshold": 0.5})[1] == APGParams(nms_threshold=0.5)
    with pytest.raises(MobileSAMError, match=r"points_per_side \(a setting of grid, boxes\): not one of sampler='ais'"):
        sampler_settings("ais", {"points_per_side": 8})
    with pytest.raises(MobileSAMError, match=r"min_size \(a setting of ais, apg\): not one of sampler='grid'"):
        sampler_settings("grid", {"min_size": 8})
    with pytest.raises(MobileSAMError, match=r"refine_with_box_prompts \(a setting of apg\): not one of sampler='ais'"):
        sampler_settings("ais", {"refine_with_box_prompts": True})
    with pytest.raises(MobileSAMError, match="Unknown setting"):
        sampler_settings("ais", {"compactness": 1})
    with pytest.raises(MobileSAMError, match="sampler must be one of 'grid', 'boxes', 'ais', 'apg'"):
        sampler_settings("amg", {})


def test_the_widgets_defaults_are_micro_sams_per_model():
    lm = settings_for_model("ais", "vit_t_lm")
    assert (lm.min_size, lm.distance_smoothing) == (100, 2.0)
    em = settings_for_model("ais", "vit_t_em_organelles", min_size=5)
    assert (em.center_distance_threshold, em.distance_smoothing, em.min_size) == (0.4, 1.2, 5)
    assert settings_for_model("ais", "mobile_sam") == WatershedParams()  # a custom decoder: generate()'s
    assert settings_for_model("apg", "vit_t_lm") == APGParams()


def test_a_model_without_decoder_is_one_clear_error(recipe_model):
    image = blobs((48, 64))
    for sampler in ("ais", "apg"):
        with pytest.raises(MobileSAMError, match="vit_t_lm or vit_t_em_organelles"):
            segment_everything(image, recipe_model, sampler=sampler)
    with pytest.raises(MobileSAMError, match="needs an instance decoder"):
        segment_stack(blobs((2, 48, 64)), recipe_model, sampler="ais", cache=EmbeddingCache(directory=None))


# -- against the functions run directly ---------------------------------------------------------------


@pytest.mark.slow
def test_ais_equals_maps_and_watershed_run_directly(recipe_model):
    """The recipe decoder on micro-sam's tiny test image; the model normalises as micro-sam does."""
    _embedding, maps = our_embedding_and_maps("tiny", recipe_model)  # of microsam_rgb(image)
    model = with_decoder(recipe_model, recipe_instance_decoder(), normalization="min-max")
    labels = segment_everything(reference("tiny")["image"], model, sampler="ais", distance_smoothing=1.0)
    np.testing.assert_array_equal(labels, watershed_from_maps(maps, distance_smoothing=1.0))


def test_ais_and_apg_on_an_embedding_equal_the_direct_calls(stand_in_model):
    predictor = Predictor(stand_in_model)
    embedding = predictor.embed(blobs((56, 72)))
    maps = instance_maps(embedding, stand_in_model.instance_decoder)
    ais = segment_everything(embedding, stand_in_model, sampler="ais", min_size=4)
    np.testing.assert_array_equal(ais, watershed_from_maps(maps, min_size=4))
    assert ais.max() >= 2
    apg = segment_everything(embedding, stand_in_model, sampler="apg", nms_threshold=0.8)
    np.testing.assert_array_equal(apg, segment_apg(embedding, maps, Predictor(stand_in_model), nms_threshold=0.8))


def test_progress_counts_the_encoder_the_maps_and_the_batches(stand_in_model):
    steps = []
    segment_everything(blobs((48, 64)), stand_in_model, sampler="apg", batch_size=2, progress=lambda *s: steps.append(s))
    assert steps[:2] == [(0, 3), (1, 3)] and steps[-1][0] == steps[-1][1] > 3


# -- the maps beside the embeddings ----------------------------------------------------------------


def test_maps_are_cached_beside_the_embedding(stand_in_model, tmp_path, monkeypatch):
    from napari_mobilesam.segment import instance_maps as maps_module

    calls = []
    real = maps_module.instance_maps
    monkeypatch.setattr(maps_module, "instance_maps", lambda *a: calls.append(1) or real(*a))
    image = blobs((48, 64))
    cache = EmbeddingCache(directory=tmp_path / "cache")
    predictor = Predictor(stand_in_model)
    first, source = segment_slice(image, predictor=predictor, cache=cache, sampler="ais", image_id="img")
    assert source == "computed" and len(calls) == 1
    again, source = segment_slice(image, predictor=predictor, cache=cache, sampler="apg", image_id="img")
    assert source == "memory" and len(calls) == 1  # the maps too
    fresh = EmbeddingCache(directory=tmp_path / "cache")  # a new process: both from disk
    embedding, maps, source = fresh.embedding_and_maps(predictor, image, image_id="img")
    assert source == "disk" and len(calls) == 1 and fresh.maps.stats["disk_hits"] == 1
    np.testing.assert_array_equal(maps, real(embedding, stand_in_model.instance_decoder))
    np.testing.assert_array_equal(first, relabel_in_order(watershed_from_maps(maps)))

    other = with_decoder(stand_in_model, StandInDecoder())
    other.instance_decoder.mix.bias.data += 0.1  # other decoder weights, the same embedding: the maps miss
    _embedding, _maps, source = fresh.embedding_and_maps(Predictor(other), image, image_id="img")
    assert source == "memory" and len(calls) == 2


def test_a_damaged_maps_chunk_is_computed_again(stand_in_model, tmp_path):
    import zarr

    image = blobs((48, 64))
    predictor = Predictor(stand_in_model)
    EmbeddingCache(directory=tmp_path).embedding_and_maps(predictor, image, image_id="img")
    (store,) = tmp_path.glob("img-*.zarr")
    zarr.open_group(str(store), mode="r+")["maps"][0, 0, 0, 0] = 123.0
    fresh = EmbeddingCache(directory=tmp_path)
    _embedding, maps, _source = fresh.embedding_and_maps(predictor, image, image_id="img")
    assert fresh.maps.stats["misses"] == 1 and maps[0, 0, 0] != 123.0


# -- stacks ----------------------------------------------------------------------------------------------


def test_a_stack_with_ais_links_objects_across_z(stand_in_model):
    stack = np.stack([blobs((48, 64), seed=z) for z in range(3)])
    cache = EmbeddingCache(directory=None)
    labels = segment_stack(stack, stand_in_model, sampler="ais", cache=cache, link_3d=True, min_size=4)
    unlinked = segment_stack(stack, stand_in_model, sampler="ais", cache=cache, link_3d=False, min_size=4)
    assert labels.shape == stack.shape and labels.dtype == np.int32
    assert 0 < labels.max() < unlinked.max()  # objects continuing in z share one id
    predictor = Predictor(stand_in_model)
    for z in range(3):
        maps = instance_maps(predictor.embed(stack[z]), stand_in_model.instance_decoder)
        expected = relabel_in_order(watershed_from_maps(maps, min_size=4))
        assert np.array_equal(unlinked[z] > 0, expected > 0)
