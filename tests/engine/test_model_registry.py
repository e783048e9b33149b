"""The model registry: names, downloads of each model's files (against a loopback server), offline use, and
embeddings of different models never sharing a cache key."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import xxhash

from napari_mobilesam.cache.keys import maps_key, slice_key
from napari_mobilesam.engine.downloads import MODELS_URL_ENV
from napari_mobilesam.engine.model_registry import (
    MODEL_ENV,
    MODELS,
    default_model_name,
    model_spec,
    models_with_decoder,
    no_decoder_error,
)
from napari_mobilesam.engine.weights import load_model, resolve_model_files, weights_status
from napari_mobilesam.errors import MobileSAMError
from recipe import recipe_decoder_state_dict, recipe_state_dict
from support.file_server import FileServer

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(cache))
    for name in (MODEL_ENV, MODELS_URL_ENV, "NAPARI_MOBILESAM_WEIGHTS", "NAPARI_MOBILESAM_WEIGHTS_URL", *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return cache


@pytest.fixture(scope="module")
def contents(tmp_path_factory):
    """The bytes a mirror serves for vit_t_lm: recipe SAM weights (seed 1, not mobile_sam's seed 0) and decoder."""
    folder = tmp_path_factory.mktemp("mirror")
    torch.save(recipe_state_dict(1), folder / "vit_t.pt")
    torch.save(recipe_decoder_state_dict(0), folder / "vit_t_decoder.pt")
    return {name: (folder / name).read_bytes() for name in ("vit_t.pt", "vit_t_decoder.pt")}


def xxh128(content: bytes) -> str:
    return f"xxh128:{xxhash.xxh128(content).hexdigest()}"


@pytest.fixture
def mirror(contents, monkeypatch):
    """A loopback mirror serving vit_t_lm's files, and the registry's hashes set to theirs."""
    server = FileServer()
    for name, content in contents.items():
        server.files[f"/vit_t_lm/{name}"] = content
    spec = MODELS["vit_t_lm"]
    monkeypatch.setitem(
        MODELS,
        "vit_t_lm",
        replace(
            spec,
            sam=replace(spec.sam, known_hash=xxh128(contents["vit_t.pt"])),
            decoder=replace(spec.decoder, known_hash=xxh128(contents["vit_t_decoder.pt"])),
        ),
    )
    monkeypatch.setenv(MODELS_URL_ENV, server.url(""))
    yield server
    server.close()


def test_the_registry_holds_micro_sams_files():
    assert list(MODELS) == ["mobile_sam", "vit_t_lm", "vit_t_em_organelles"]
    assert models_with_decoder() == ["vit_t_lm", "vit_t_em_organelles"]
    lm, em = MODELS["vit_t_lm"], MODELS["vit_t_em_organelles"]
    assert lm.sam.url.endswith("/bioimage.io/faithful-chicken/1.1/files/vit_t.pt")
    assert lm.decoder.known_hash == "xxh128:3e914a5f397b0312cdd36813031f8823"
    assert em.sam.known_hash == "xxh128:253474720c497cce605e57c9b1d18fd9"
    assert em.decoder.url.endswith("/greedy-whale/1/files/vit_t_decoder.pt")
    assert lm.normalization == em.normalization == "min-max" and MODELS["mobile_sam"].normalization == "percentiles"
    assert em.ais_defaults["center_distance_threshold"] == 0.4 and lm.ais_defaults["distance_smoothing"] == 2.0
    assert MODELS["mobile_sam"].decoder is None and MODELS["mobile_sam"].sam.path == "mobile_sam.pt"


def test_names_and_the_default(monkeypatch):
    assert default_model_name() == "mobile_sam" and model_spec().name == "mobile_sam"
    monkeypatch.setenv(MODEL_ENV, "vit_t_em_organelles")
    assert model_spec().name == "vit_t_em_organelles"
    monkeypatch.setenv(MODEL_ENV, "vit_h")
    with pytest.raises(MobileSAMError, match=f"{MODEL_ENV}='vit_h' is not a model.*unset it"):
        model_spec()
    with pytest.raises(MobileSAMError, match=r"model='sam2' is not a model napari-mobilesam knows.*vit_t_lm \(micro-sam"):
        load_model(model="sam2", device="cpu")


def test_a_model_without_decoder_names_the_models_with_one():
    message = str(no_decoder_error("ais", "mobile_sam"))
    assert "'ais' sampler needs an instance decoder" in message and "'mobile_sam' has none" in message
    assert "vit_t_lm or vit_t_em_organelles" in message


def test_a_model_and_its_decoder_are_downloaded_once(mirror, isolated_environment):
    model = load_model(model="vit_t_lm", device="cpu")
    folder = isolated_environment / "weights" / "vit_t_lm"
    assert sorted(p.name for p in folder.iterdir()) == ["vit_t.pt", "vit_t_decoder.pt"]
    assert model.model_name == "vit_t_lm" and model.input_normalization == "min-max"
    assert model.weights_path == str((folder / "vit_t.pt").resolve())
    assert model.instance_decoder.weights_path == str((folder / "vit_t_decoder.pt").resolve())
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(model.state_dict()[key], recipe_state_dict(1)[key])
    assert mirror.requests == ["/vit_t_lm/vit_t.pt", "/vit_t_lm/vit_t_decoder.pt"]

    load_model(model="vit_t_lm", device="cpu")
    assert len(mirror.requests) == 2  # both files were in the cache, checked by their xxh128
    assert resolve_model_files("vit_t_lm", None, None) == (str(folder / "vit_t.pt"), str(folder / "vit_t_decoder.pt"))


def test_a_wrong_file_is_deleted_and_named(contents, monkeypatch, isolated_environment):
    server = FileServer()
    server.files["/vit_t_lm/vit_t.pt"] = contents["vit_t.pt"]  # not micro-sam's file: its xxh128 differs
    monkeypatch.setenv(MODELS_URL_ENV, server.url(""))
    try:
        with pytest.raises(MobileSAMError, match="xxh128 expected 72ec5074774761a6e5c05a08942f981e, got") as info:
            load_model(model="vit_t_lm", device="cpu")
    finally:
        server.close()
    assert "deleted" in str(info.value) and MODELS_URL_ENV in str(info.value)
    assert not (isolated_environment / "weights" / "vit_t_lm" / "vit_t.pt").exists()


def test_offline_the_error_says_where_each_file_goes(closed_port_url, monkeypatch, isolated_environment):
    monkeypatch.setenv(MODELS_URL_ENV, closed_port_url.rsplit("/", 1)[0])
    with pytest.raises(MobileSAMError, match="Could not download the vit_t_lm weights") as info:
        load_model(model="vit_t_lm", device="cpu")
    assert str(isolated_environment / "weights" / "vit_t_lm" / "vit_t.pt") in str(info.value)
    status = weights_status("vit_t_lm")
    assert status["model"] == "vit_t_lm" and status["present"] is False
    assert status["url"].endswith("/vit_t_lm/vit_t.pt")


def test_files_put_by_hand_are_used_offline(contents, mirror, closed_port_url, monkeypatch, isolated_environment):
    folder = isolated_environment / "weights" / "vit_t_lm"
    folder.mkdir(parents=True)
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    monkeypatch.setenv(MODELS_URL_ENV, closed_port_url.rsplit("/", 1)[0])
    assert load_model(model="vit_t_lm", device="cpu").instance_decoder is not None
    assert mirror.requests == []


def test_local_files_need_no_download(tmp_path, contents, monkeypatch):
    monkeypatch.setenv(MODELS_URL_ENV, "http://127.0.0.1:9/nothing-listens")
    (tmp_path / "sam.pt").write_bytes(contents["vit_t.pt"])
    (tmp_path / "decoder.pt").write_bytes(contents["vit_t_decoder.pt"])
    model = load_model(tmp_path / "sam.pt", "cpu", model="vit_t_em_organelles", decoder=tmp_path / "decoder.pt")
    assert model.model_name == "vit_t_em_organelles" and model.instance_decoder is not None
    with pytest.raises(MobileSAMError, match="--decoder: .*missing.pt does not exist"):
        resolve_model_files("vit_t_lm", tmp_path / "sam.pt", tmp_path / "missing.pt")


def test_embeddings_of_different_models_never_share_a_key(mirror, tmp_path, contents):
    mobile = tmp_path / "mobile_sam.pt"
    torch.save(recipe_state_dict(0), mobile)
    image = np.random.default_rng(0).integers(0, 4000, (32, 40)).astype(np.uint16)
    default = load_model(mobile, "cpu")
    lm = load_model(model="vit_t_lm", device="cpu")
    same_file = load_model(mobile, "cpu", model="vit_t_lm")  # mobile_sam's weights, micro-sam's normalisation
    keys = {slice_key(image, model) for model in (default, lm, same_file)}
    assert len(keys) == 3
    limits = (0.0, 4000.0)  # with contrast limits both see the same pixels: only the weights tell them apart
    assert slice_key(image, default, limits) == slice_key(image, same_file, limits) != slice_key(image, lm, limits)
    from napari_mobilesam.model.instance_decoder import build_instance_decoder

    key = slice_key(image, lm)  # the maps' key: the embedding's and the decoder's weights
    other = build_instance_decoder(recipe_decoder_state_dict(1))
    assert len({key, maps_key(key, lm.instance_decoder), maps_key(key, other)}) == 3
