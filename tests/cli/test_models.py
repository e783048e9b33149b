"""The command line with a named model: --model with local files, --sampler ais/apg with the model's settings,
the instance maps kept in the disk cache between runs, and the errors of a model without a decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from support.cli_runs import assert_one_line_error, leftovers, run

MODEL = ["--model", "vit_t_lm", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def decoder_file(work):
    from recipe import recipe_decoder_state_dict

    path = work["root"] / "decoder.pt"
    torch.save(recipe_decoder_state_dict(0), path)
    return path


def expected_maps(work, decoder_file, source: str):
    """The embedding and maps of ``source`` as the runs filed them in the disk cache (nothing is computed)."""
    from napari_mobilesam import EmbeddingCache, Predictor, load_model
    from napari_mobilesam.io.images import read_image

    model = load_model(work["weights"], "cpu", model="vit_t_lm", decoder=decoder_file)
    image = read_image(work["root"] / source)
    cache = EmbeddingCache(directory=work["root"] / "cache" / "embeddings")
    predictor = Predictor(model)
    embedding, maps, source = cache.embedding_and_maps(
        predictor, np.asarray(image.data), image_id=image.image_id, slice_index=0, n_slices=1
    )
    assert source == "disk" and cache.maps.stats["disk_hits"] == 1
    return predictor, embedding, maps


def test_ais_then_apg_with_local_files_reuse_the_maps(work, decoder_file):
    from napari_mobilesam.segment.apg import segment_apg
    from napari_mobilesam.segment.instance_watershed import watershed_from_maps
    from napari_mobilesam.segment.linking import relabel_in_order
    from napari_mobilesam.segment.params import settings_for_model

    root = work["root"]
    files = ["--weights", work["weights"], "--decoder", decoder_file]
    run(work, "segment", "image.tif", "-o", "ais.tif", *files, *MODEL, "--sampler", "ais", "--min-size", "3")
    predictor, embedding, maps = expected_maps(work, decoder_file, "image.tif")
    settings = settings_for_model("ais", "vit_t_lm", min_size=3)  # vit_t_lm's distance smoothing 2.0
    assert settings.distance_smoothing == 2.0
    np.testing.assert_array_equal(tifffile.imread(root / "ais.tif"), relabel_in_order(watershed_from_maps(maps, settings)))

    # apg on the same image: its maps come from the disk cache (the decoder does not run again).
    run(work, "segment", "image.tif", "-o", "apg.tif", *files, *MODEL, "--sampler", "apg", "--batch-size", "8")
    expected = relabel_in_order(segment_apg(embedding, maps, predictor, batch_size=8))
    np.testing.assert_array_equal(tifffile.imread(root / "apg.tif"), expected)


def test_a_model_without_decoder_asked_for_ais(work, tmp_path):
    out = run(work, "segment", "image.tif", "-o", tmp_path / "x.tif", "--weights", work["weights"], "--sampler", "ais",
              "-q", check=False)
    assert_one_line_error(out, "'ais' sampler needs an instance decoder", "'mobile_sam' has none", "vit_t_lm or vit_t_em_organelles")
    assert leftovers(tmp_path) == []


def test_settings_of_another_sampler_are_refused(work, tmp_path):
    out = run(work, "segment", "image.tif", "-o", tmp_path / "x.tif", "--weights", work["weights"], "--min-size", "5",
              "-q", check=False)
    assert_one_line_error(out, "--min-size: not a setting of --sampler grid")
    out = run(work, "segment", "image.tif", "-o", tmp_path / "x.tif", "--model", "nope", check=False)
    assert out.returncode == 2 and "invalid choice: 'nope'" in out.stderr


def test_info_lists_the_models_and_where_their_files_go(work):
    report = json.loads(run(work, "info", "--json").stdout)
    models = {model["name"]: model for model in report["models"]}
    assert list(models) == ["mobile_sam", "vit_t_lm", "vit_t_em_organelles"]
    assert models["mobile_sam"]["default"] and not models["mobile_sam"]["decoder"] and models["vit_t_lm"]["decoder"]
    paths = [file["cache_path"] for file in models["vit_t_em_organelles"]["files"]]
    weights = work["root"] / "cache" / "weights" / "vit_t_em_organelles"
    assert paths == [str(weights / "vit_t.pt"), str(weights / "vit_t_decoder.pt")]
    text = run(work, "info").stdout
    assert "vit_t_lm: micro-sam for light microscopy" in text and "not cached: downloaded on first use" in text
