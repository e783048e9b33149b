"""Checkpoint formats: plain SAM and decoder state dicts, micro-sam's combined and training files, strict keys,
and pickled code that must never run."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from napari_mobilesam.engine.checkpoint_formats import read_decoder_file, read_sam_checkpoint
from napari_mobilesam.engine.weights import check_decoder, check_weights, load_model
from napari_mobilesam.errors import MobileSAMError
from recipe import recipe_decoder_state_dict, recipe_state_dict

SAM_KEY = "mask_decoder.iou_token.weight"
DECODER_KEY = "out_conv.weight"


class TrainerConfig:
    """A custom object, as torch_em's trainers pickle beside the weights."""

    def __init__(self) -> None:
        self.learning_rate = 1e-5
        self.name = "vit_t_lm"


class WritesAFile:
    """Unpickling this would run ``exec`` and create ``marker``: it must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def states():
    return {"sam": recipe_state_dict(0), "decoder": recipe_decoder_state_dict(0)}


@pytest.fixture(scope="module")
def files(tmp_path_factory, states):
    """One file of each format, made from the recipe weights."""
    folder = tmp_path_factory.mktemp("formats")
    sam, decoder = states["sam"], states["decoder"]
    paths = {name: folder / f"{name}.pt" for name in ("sam", "decoder", "export", "training")}
    torch.save(sam, paths["sam"])
    torch.save(decoder, paths["decoder"])
    torch.save({"model_state": sam, "decoder_state": decoder}, paths["export"])
    optimizer = {
        "state": {0: {"step": 12, "exp_avg": torch.zeros(3)}},
        "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "weight_decay": 0.0, "params": [0]}],
    }
    torch.save(
        {
            "model_state": OrderedDict((f"sam.{key}", value) for key, value in sam.items()),
            "decoder_state": OrderedDict(decoder),
            "optimizer_state": optimizer,
            "iteration": 5000,
            "best_metric": 0.25,
            "init": TrainerConfig(),
        },
        paths["training"],
    )
    return paths


def test_formats_read_the_same_weights(files, states):
    plain = read_sam_checkpoint(files["sam"])
    assert plain.format == "state dict" and plain.decoder is None
    for name in ("export", "training"):
        read = read_sam_checkpoint(files[name])
        assert read.format == "micro-sam"
        assert read.sam.keys() == states["sam"].keys()  # the training file's "sam." prefix is gone
        assert torch.equal(read.sam[SAM_KEY], states["sam"][SAM_KEY])
        assert torch.equal(read.decoder[DECODER_KEY], states["decoder"][DECODER_KEY])
    for name in ("decoder", "export", "training"):
        decoder = read_decoder_file(files[name])
        assert len(decoder) == 66 and torch.equal(decoder[DECODER_KEY], states["decoder"][DECODER_KEY])


def test_weights_only_refuses_the_training_file_that_is_read_inertly(files):
    with pytest.raises(pickle.UnpicklingError):
        torch.load(files["training"], weights_only=True)  # what makes the inert reading necessary
    assert check_weights(files["training"]) is True  # it holds a decoder too, checked as well
    assert check_weights(files["sam"]) is False


def test_load_model_takes_the_decoder_from_a_micro_sam_file(files, states, monkeypatch):
    from napari_mobilesam.engine import weights

    monkeypatch.setattr(weights, "fetch_file", lambda *a, **k: pytest.fail("must not download"))
    model = load_model(files["training"], device="cpu", model="vit_t_lm")
    assert model.model_name == "vit_t_lm" and model.input_normalization == "min-max"
    assert torch.equal(model.instance_decoder.state_dict()[DECODER_KEY], states["decoder"][DECODER_KEY])
    assert model.instance_decoder.weights_path == str(files["training"].resolve())
    assert set(model.state_dict()) == set(states["sam"])  # the decoder is not part of the SAM module


def test_load_model_with_a_separate_decoder_file(files, states):
    model = load_model(files["sam"], device="cpu", decoder=files["decoder"])
    assert model.model_name == "mobile_sam" and model.input_normalization == "percentiles"
    assert torch.equal(model.instance_decoder.state_dict()[DECODER_KEY], states["decoder"][DECODER_KEY])
    assert model.instance_decoder.weights_sha256 != model.weights_sha256
    assert load_model(files["sam"], device="cpu").instance_decoder is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda state: state.pop(DECODER_KEY), f"1 missing: {DECODER_KEY}"),
        (lambda state: state.update({"extra.weight": torch.zeros(1)}), "1 unexpected: extra.weight"),
        (lambda state: state.update({DECODER_KEY: torch.zeros(3, 7, 1, 1)}), "wrong shape"),
    ],
)
def test_decoder_keys_are_strict(tmp_path, files, states, change, named):
    state = dict(states["decoder"])
    change(state)
    path = tmp_path / "decoder.pt"
    torch.save(state, path)
    with pytest.raises(MobileSAMError, match=named) as info:
        load_model(files["sam"], device="cpu", decoder=path)
    assert str(path) in str(info.value)


def test_files_given_in_each_others_place_are_named(files):
    with pytest.raises(MobileSAMError, match="is not a micro-sam instance decoder"):
        check_decoder(files["sam"])
    with pytest.raises(MobileSAMError, match="looks like micro-sam's instance decoder: pass it as the decoder"):
        load_model(files["decoder"], device="cpu")


def test_a_micro_sam_file_without_a_decoder_as_the_decoder(tmp_path, states):
    path = tmp_path / "sam_only.pt"
    torch.save({"model_state": states["sam"]}, path)
    with pytest.raises(MobileSAMError, match="without an instance decoder"):
        read_decoder_file(path)
    assert read_sam_checkpoint(path).decoder is None


# -- pickled code -----------------------------------------------------------------------------------


def test_a_payload_beside_the_weights_never_runs(tmp_path, states):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "payload.pt"
    torch.save({"model_state": states["sam"], "decoder_state": states["decoder"], "init": WritesAFile(marker)}, path)
    read = read_sam_checkpoint(path)  # the tensors are taken, the payload is left inert
    assert torch.equal(read.sam[SAM_KEY], states["sam"][SAM_KEY])
    assert not marker.exists()


def test_a_payload_in_place_of_the_weights_is_named_and_never_runs(tmp_path, states):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "payload.pt"
    torch.save({"model_state": WritesAFile(marker), "decoder_state": states["decoder"]}, path)
    with pytest.raises(MobileSAMError, match=r"'model_state' holds pickled Python objects \(builtins.exec\)"):
        load_model(path, device="cpu", model="vit_t_lm")
    assert not marker.exists()


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_payload_in_a_file_that_is_not_micro_sams_never_runs(tmp_path, writer):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "payload.pt"
    content = {"weight": torch.zeros(1), "payload": WritesAFile(marker)}
    if writer == "torch.save":
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content))
    with pytest.raises(MobileSAMError):
        load_model(path, device="cpu")
    with pytest.raises(MobileSAMError):
        check_decoder(path)
    assert not marker.exists()
