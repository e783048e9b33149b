"""Weights: the download cache (against a real loopback HTTP server), reading checkpoints, load_model."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from napari_mobilesam.engine import downloads, weights
from napari_mobilesam.engine.cache_folder import cache_dir
from napari_mobilesam.engine.model_registry import MODELS
from napari_mobilesam.engine.weights import (
    CACHE_ENV,
    OFFICIAL_SHA256,
    OFFICIAL_URL,
    WEIGHTS_ENV,
    WEIGHTS_FILENAME,
    WEIGHTS_URL_ENV,
    check_weights,
    download_weights,
    file_sha256,
    load_model,
    load_state_dict,
    weights_status,
)
from napari_mobilesam.errors import MobileSAMError
from recipe import recipe_state_dict
from support.file_server import FileServer

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


class Checkpoint:
    """A full MobileSAM state dict (the seeded recipe) saved as a file, ~40 MB."""

    def __init__(self, folder: Path) -> None:
        self.state = recipe_state_dict(0)
        self.path = folder / WEIGHTS_FILENAME
        torch.save(self.state, self.path)
        self.content = self.path.read_bytes()
        self.sha256 = hashlib.sha256(self.content).hexdigest()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Checkpoint:
    return Checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path) -> Path:
    """A fresh cache folder per test, no overrides from the caller, loopback not proxied."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    for name in (WEIGHTS_ENV, WEIGHTS_URL_ENV, "NAPARI_MOBILESAM_DEVICE", *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return cache


@pytest.fixture
def server(checkpoint):
    file_server = FileServer()
    file_server.files["/mobile_sam.pt"] = checkpoint.content
    yield file_server
    file_server.close()


def cached_file(cache: Path) -> Path:
    return cache / "weights" / WEIGHTS_FILENAME


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- cache folder and download -------------------------------------------------------------------


def test_cache_dir_follows_the_environment(isolated_environment, monkeypatch):
    assert cache_dir() == isolated_environment
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir().name == "napari-mobilesam"


def test_download_fills_the_cache_once(server, checkpoint, isolated_environment):
    path = download_weights(url=server.url("/mobile_sam.pt"), sha256=checkpoint.sha256)

    assert path == cached_file(isolated_environment)
    assert path.read_bytes() == checkpoint.content
    assert files_in(path.parent) == [WEIGHTS_FILENAME]  # no temporary file left behind
    assert server.requests == ["/mobile_sam.pt"]

    again = download_weights(url=server.url("/mobile_sam.pt"), sha256=f"sha256:{checkpoint.sha256.upper()}")
    assert again == path
    assert server.requests == ["/mobile_sam.pt"]  # the cached file was used, no second request


def test_explicit_cache_dir_argument(server, checkpoint, tmp_path, isolated_environment):
    path = download_weights(url=server.url("/mobile_sam.pt"), sha256=checkpoint.sha256, cache_dir=tmp_path / "mine")
    assert path == tmp_path / "mine" / "weights" / WEIGHTS_FILENAME
    assert not isolated_environment.exists()


def test_wrong_hash_deletes_the_download(server, checkpoint, isolated_environment):
    wrong = "0" * 64
    with pytest.raises(MobileSAMError, match=rf"expected {wrong}, got {checkpoint.sha256}") as info:
        download_weights(url=server.url("/mobile_sam.pt"), sha256=wrong)
    assert "deleted" in str(info.value)
    assert files_in(cached_file(isolated_environment).parent) == []


def test_official_hash_mismatch_reports_sizes(server, checkpoint, isolated_environment):
    with pytest.raises(MobileSAMError, match=rf"{len(checkpoint.content)} bytes arrived.*{weights.OFFICIAL_SIZE}"):
        download_weights(url=server.url("/mobile_sam.pt"))
    assert files_in(cached_file(isolated_environment).parent) == []


def test_http_error_says_where_to_put_the_file(server, isolated_environment):
    with pytest.raises(MobileSAMError) as info:
        download_weights(url=server.url("/missing.pt"))
    message = str(info.value)
    assert "HTTP status 404" in message
    assert server.url("/missing.pt") in message
    assert str(cached_file(isolated_environment)) in message
    assert f"{WEIGHTS_ENV}=" in message
    assert files_in(cached_file(isolated_environment).parent) == []


def test_no_server_says_where_to_put_the_file(closed_port_url, isolated_environment):
    with pytest.raises(MobileSAMError, match="Could not download") as info:
        download_weights(url=closed_port_url)
    assert closed_port_url in str(info.value)
    assert str(cached_file(isolated_environment)) in str(info.value)
    assert files_in(cached_file(isolated_environment).parent) == []


def test_file_put_by_hand_is_used_without_network(checkpoint, closed_port_url, isolated_environment):
    target = cached_file(isolated_environment)
    target.parent.mkdir(parents=True)
    target.write_bytes(checkpoint.content)
    assert download_weights(url=closed_port_url, sha256=checkpoint.sha256) == target


def test_stale_cached_file_is_replaced(server, checkpoint, isolated_environment):
    target = cached_file(isolated_environment)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"an old, different file")
    assert download_weights(url=server.url("/mobile_sam.pt"), sha256=checkpoint.sha256) == target
    assert target.read_bytes() == checkpoint.content


def test_stale_cached_file_is_reported_when_the_download_fails(checkpoint, closed_port_url, isolated_environment):
    target = cached_file(isolated_environment)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"an old, different file")
    with pytest.raises(MobileSAMError, match="already at .* has SHA-256"):
        download_weights(url=closed_port_url, sha256=checkpoint.sha256)


def test_environment_url_is_used_with_the_official_hash(server, checkpoint, monkeypatch, isolated_environment):
    monkeypatch.setenv(WEIGHTS_URL_ENV, server.url("/mobile_sam.pt"))
    # The test checkpoint is not the official file: a mirror must serve the official bytes.
    with pytest.raises(MobileSAMError, match=rf"expected {OFFICIAL_SHA256}"):
        download_weights()
    assert server.requests == ["/mobile_sam.pt"]

    assert download_weights(sha256=checkpoint.sha256) == cached_file(isolated_environment)
    assert server.requests == ["/mobile_sam.pt", "/mobile_sam.pt"]


def test_unwritable_cache_says_to_set_the_cache_variable(server, checkpoint, tmp_path, monkeypatch):
    # Tests may run as root, which ignores permission bits: a path under a regular file cannot be created.
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "sub"))
    with pytest.raises(MobileSAMError, match=rf"Cannot write.*{CACHE_ENV}"):
        download_weights(url=server.url("/mobile_sam.pt"), sha256=checkpoint.sha256)
    assert server.requests == []
    assert blocker.read_text() == "not a folder"


def test_malformed_hash_is_refused(server):
    with pytest.raises(MobileSAMError, match="64 hexadecimal digits"):
        download_weights(url=server.url("/mobile_sam.pt"), sha256="abc123")
    assert server.requests == []


# --- reading checkpoint files --------------------------------------------------------------------


def test_load_state_dict_reads_tensors_on_the_cpu(checkpoint):
    state = load_state_dict(checkpoint.path)
    assert state.keys() == checkpoint.state.keys()
    assert all(tensor.device.type == "cpu" for tensor in state.values())
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(state[key], checkpoint.state[key])


@pytest.mark.parametrize("wrap", [lambda s: {"model": s}, lambda s: {"state_dict": s, "epoch": 3}])
def test_common_wrappers_are_unwrapped(tmp_path, wrap):
    state = {"a.weight": torch.ones(2, 3), "a.bias": torch.zeros(2)}
    path = tmp_path / "wrapped.pt"
    torch.save(wrap(state), path)
    loaded = load_state_dict(path)
    assert loaded.keys() == state.keys()
    assert torch.equal(loaded["a.weight"], state["a.weight"])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ([torch.zeros(2)], "holds a list, not a state dict"),
        ({}, "empty dict"),
        ({"weight": torch.zeros(2), "epoch": 3}, "'epoch' is a int, not a tensor"),
        (Counter(a=1), "'a' is a int"),
        ({"optimizer": {"lr": 0.1}}, "'optimizer' is a dict"),
    ],
)
def test_things_that_are_not_state_dicts_are_refused(tmp_path, content, match):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(MobileSAMError, match=match):
        load_state_dict(path)


def test_truncated_file_says_to_download_again(checkpoint, tmp_path):
    path = tmp_path / "half.pt"
    path.write_bytes(checkpoint.content[: len(checkpoint.content) // 2])
    with pytest.raises(MobileSAMError, match=r"truncated or damaged.*delete .*half\.pt"):
        load_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"<html>Rate limit exceeded</html>"])
def test_garbage_file_is_refused(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(MobileSAMError, match="garbage.pt"):
        load_state_dict(path)


def test_folder_is_refused(tmp_path):
    with pytest.raises(MobileSAMError, match="is a folder"):
        load_state_dict(tmp_path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(MobileSAMError, match="No weights file at .*nothing.pt"):
        load_state_dict(tmp_path / "nothing.pt")


class _DeletesAFile:
    """Unpickling this would delete ``target``: it must never be unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.remove, (str(self.target),))


def test_pickled_code_is_not_run(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": _DeletesAFile(canary)}, path)
    with pytest.raises(MobileSAMError, match="refused because unpickling them can run arbitrary code"):
        load_state_dict(path)
    assert canary.exists()


def test_file_sha256_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    path.write_bytes(b"first")
    calls = []
    real_hash = downloads._hash_file
    monkeypatch.setattr(downloads, "_hash_file", lambda p, algorithm="sha256": calls.append(p) or real_hash(p, algorithm))

    assert file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    assert file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    assert len(calls) == 1
    path.write_bytes(b"second, longer")
    assert file_sha256(path) == hashlib.sha256(b"second, longer").hexdigest()
    assert len(calls) == 2


# --- load_model ----------------------------------------------------------------------------------


def test_load_model_loads_the_checkpoint_in_eval_mode(checkpoint):
    model = load_model(checkpoint.path, device="cpu")

    assert not model.training
    assert not any(module.training for module in model.modules())
    assert model.device == torch.device("cpu")
    loaded = model.state_dict()
    assert loaded.keys() == checkpoint.state.keys()
    assert all(torch.equal(loaded[key], tensor) for key, tensor in checkpoint.state.items())
    assert model.weights_path == str(checkpoint.path.resolve())
    assert model.weights_sha256 == checkpoint.sha256


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_load_model_on_a_gpu(checkpoint):
    model = load_model(checkpoint.path, device="cuda")
    assert model.device.type == "cuda"
    key = "image_encoder.layers.0.blocks.0.conv1.c.weight"
    assert torch.equal(model.state_dict()[key].cpu(), checkpoint.state[key])


def test_load_model_uses_the_weights_environment_variable(checkpoint, monkeypatch, isolated_environment):
    monkeypatch.setenv(WEIGHTS_ENV, str(checkpoint.path))
    monkeypatch.setattr(weights, "download_weights", lambda *a, **k: pytest.fail("must not download"))
    model = load_model(device="cpu")
    assert model.weights_path == str(checkpoint.path.resolve())
    assert not isolated_environment.exists()


def test_load_model_with_a_bad_weights_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nothing.pt"))
    with pytest.raises(MobileSAMError, match=rf"{WEIGHTS_ENV} points to .*does not exist.*unset it"):
        load_model(device="cpu")


def test_load_model_downloads_when_nothing_is_given(server, checkpoint, monkeypatch, isolated_environment):
    monkeypatch.setenv(WEIGHTS_URL_ENV, server.url("/mobile_sam.pt"))
    official = MODELS["mobile_sam"]  # the recipe file stands in for the official one
    monkeypatch.setitem(MODELS, "mobile_sam", replace(official, sam=replace(official.sam, known_hash=f"sha256:{checkpoint.sha256}")))
    model = load_model(device="cpu")
    assert model.weights_path == str(cached_file(isolated_environment).resolve())
    assert model.weights_sha256 == checkpoint.sha256
    load_model(device="cpu")
    assert server.requests == ["/mobile_sam.pt"]


def test_load_model_checks_the_device_before_downloading(server, monkeypatch):
    monkeypatch.setenv(WEIGHTS_URL_ENV, server.url("/mobile_sam.pt"))
    with pytest.raises(MobileSAMError, match="not a device name"):
        load_model(device="no-such-device")
    assert server.requests == []


def save(tmp_path: Path, state: dict, name: str = "other.pt") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def sam_vit_b_like() -> dict:
    return {
        "image_encoder.pos_embed": torch.zeros(1, 4, 4, 768),
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.blocks.0.attn.qkv.weight": torch.zeros(3 * 768, 768),
        "mask_decoder.iou_token.weight": torch.zeros(1, 256),
    }


def test_sam_vit_b_checkpoint_is_named(tmp_path):
    path = save(tmp_path, {"model": sam_vit_b_like()})
    with pytest.raises(MobileSAMError, match="looks like a SAM ViT-B checkpoint") as info:
        load_model(path, device="cpu")
    message = str(info.value)
    assert "Missing keys (" in message and "image_encoder.patch_embed.seq.0.c.weight" in message
    assert "Unexpected keys (3): " in message and "image_encoder.blocks.0.attn.qkv.weight" in message


@pytest.mark.parametrize(
    ("state", "named"),
    [
        ({f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(24)}, "SAM ViT-L"),
        ({"image_encoder.patch_embed.proj.weight": torch.zeros(1280, 3, 16, 16)}, "SAM ViT-H"),
        (
            {"image_encoder.trunk.blocks.0.attn.qkv.weight": torch.zeros(1), "sam_mask_decoder.x": torch.zeros(1)},
            "SAM 2",
        ),
        (
            {
                "image_encoder.patch_embed.proj.weight": torch.zeros(192, 3, 16, 16),
                "prompt_encoder.invalid_points.weight": torch.zeros(1, 256),
            },
            "EfficientSAM-Ti",
        ),
        ({"module.image_encoder.neck.0.weight": torch.zeros(1), "module.mask_decoder.x": torch.zeros(1)}, "'module.'"),
        ({"backbone.conv1.weight": torch.zeros(1)}, "does not look like any SAM model"),
    ],
)
def test_other_checkpoints_are_named(tmp_path, state, named):
    with pytest.raises(MobileSAMError, match=named):
        load_model(save(tmp_path, state), device="cpu")


def test_missing_keys_are_listed(checkpoint, tmp_path):
    state = dict(checkpoint.state)
    dropped = sorted(key for key in state if key.startswith("mask_decoder."))
    for key in dropped:
        del state[key]
    with pytest.raises(MobileSAMError) as info:
        load_model(save(tmp_path, state), device="cpu")
    message = str(info.value)
    assert f"Missing keys ({len(dropped)})" in message
    assert "more)" in message  # only the first five are spelled out
    assert "Unexpected keys" not in message
    assert "MobileSAM (TinyViT) checkpoint from a modified model" in message


def test_wrong_shapes_are_reported(checkpoint, tmp_path):
    state = dict(checkpoint.state)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    with pytest.raises(MobileSAMError, match=r"wrong shape.*iou_token.weight: \(1, 128\) in the file, \(1, 256\)"):
        load_model(save(tmp_path, state), device="cpu")


# --- status --------------------------------------------------------------------------------------


def test_weights_status_before_download(isolated_environment):
    status = weights_status()
    assert status["path"] == str(cached_file(isolated_environment))
    assert status["present"] is False
    assert status["source"] == "cache"
    assert status["cache_verified"] is None
    assert status["url"] == OFFICIAL_URL
    assert status["overrides"] == {CACHE_ENV: str(isolated_environment)}


def test_weights_status_with_overrides(checkpoint, monkeypatch, isolated_environment):
    target = cached_file(isolated_environment)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the official file")
    monkeypatch.setenv(WEIGHTS_ENV, str(checkpoint.path))
    monkeypatch.setenv(WEIGHTS_URL_ENV, "https://mirror.example/mobile_sam.pt")

    status = weights_status()
    assert status["path"] == str(checkpoint.path)
    assert status["present"] is True
    assert status["source"] == WEIGHTS_ENV
    assert status["cache_present"] is True
    assert status["cache_verified"] is False
    assert status["url"] == "https://mirror.example/mobile_sam.pt"
    assert set(status["overrides"]) == {WEIGHTS_ENV, WEIGHTS_URL_ENV, CACHE_ENV}


def test_check_weights_reads_without_loading_a_model(checkpoint, tmp_path):
    """What a run checks before it makes its work folder (dask workers load the model themselves)."""
    check_weights(checkpoint.path)
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 100)
    with pytest.raises(MobileSAMError, match="garbage.pt could not be loaded as plain weights"):
        check_weights(tmp_path / "garbage.pt")
    torch.save({"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(2304, 768)}, tmp_path / "vit_b.pt")
    with pytest.raises(MobileSAMError, match="is not a MobileSAM checkpoint"):
        check_weights(tmp_path / "vit_b.pt")
