"""The precision choice: explicit requests, and what ``auto`` picks on each kind of hardware (capabilities mocked)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mobilesam.engine import precision as precision_module
from napari_mobilesam.engine.precision import check_precision, choose_precision, cpu_bf16_features
from napari_mobilesam.errors import MobileSAMError


@pytest.fixture
def cpu(monkeypatch):
    """Set the CPU's capabilities as torch's probes report them: ``cpu(amx=..., avx512_bf16=..., onednn=...)``."""

    def set_features(amx=False, avx512_bf16=False, onednn=True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
        monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: onednn)

    return set_features


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({"amx": True}, "bfloat16"),
        ({"avx512_bf16": True}, "bfloat16"),
        ({"amx": True, "avx512_bf16": True}, "bfloat16"),
        ({}, "float32"),
        ({"amx": True, "onednn": False}, "float32"),
    ],
)
def test_auto_on_a_cpu_follows_its_bf16_instructions(cpu, features, expected):
    cpu(**features)
    choice = choose_precision(torch.device("cpu"), "auto")
    assert choice.name == expected
    assert choice.reason.startswith("auto: ")
    if features.get("amx") and features.get("onednn", True):
        assert "AMX" in choice.reason


def test_the_cpuinfo_flags_stand_in_where_torch_has_no_probe(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    monkeypatch.setattr(precision_module, "_CPUINFO", str(cpuinfo))
    assert cpu_bf16_features()["avx512_bf16"] is True
    assert cpu_bf16_features()["amx"] is False
    monkeypatch.setattr(precision_module, "_CPUINFO", str(tmp_path / "absent"))
    assert cpu_bf16_features()["amx"] is None  # unknown: no native bf16 is assumed
    assert choose_precision("cpu", "auto").name == "float32"


def test_a_probe_that_fails_is_answered_by_cpuinfo(monkeypatch, tmp_path):
    def broken():
        raise RuntimeError("no cpuinfo")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: amx_bf16 amx_tile\n")
    monkeypatch.setattr(precision_module, "_CPUINFO", str(cpuinfo))
    assert cpu_bf16_features()["amx"] is True


@pytest.mark.parametrize(("native", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_on_cuda_takes_bf16_only_where_it_is_native(monkeypatch, native, expected):
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Fake GPU")
    choice = choose_precision("cuda:0", "auto")
    assert choice.name == expected
    assert calls == [False]  # emulated bf16 (older GPUs) does not count
    assert "Fake GPU" in choice.reason


def test_auto_on_mps_is_float16():
    assert choose_precision("mps", "auto").name == "float16"


def test_explicit_precisions_are_used_as_asked_and_say_when_emulated(cpu):
    cpu()  # no native bf16
    assert choose_precision("cpu", "float32").name == "float32"
    choice = choose_precision("cpu", "bfloat16")
    assert choice.name == "bfloat16" and "emulated" in choice.reason
    cpu(amx=True)
    assert "native" in choose_precision("cpu", "bfloat16").reason
    assert choose_precision("cpu", None).name == "float32"  # the default


def test_a_bad_precision_is_one_clear_error():
    with pytest.raises(MobileSAMError, match=r"'half' is not a precision; use one of 'auto', 'float32'"):
        check_precision("half")
    assert check_precision(" BFloat16 ") == "bfloat16"


def test_this_machine_has_an_answer():
    choice = choose_precision("cpu", "auto")
    assert choice.name in ("float32", "bfloat16") and choice.reason


def test_float32_asked_for_is_the_default_bit_for_bit(recipe_model):
    from napari_mobilesam import Predictor

    image = np.random.default_rng(5).integers(0, 4000, (120, 90), dtype=np.uint16)
    default = Predictor(recipe_model)
    assert default.precision == "float32"
    explicit = Predictor(recipe_model, precision="float32").embed(image)
    assert default.embed(image).features.tobytes() == explicit.features.tobytes()
    # and the encoder called as before precisions existed (the parity tests' path)
    from napari_mobilesam.engine.preprocessing import resize_longest_side, to_uint8_rgb

    x = torch.from_numpy(resize_longest_side(to_uint8_rgb(image))).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        direct = recipe_model.image_encoder(recipe_model.preprocess(x))[0].numpy()
    assert direct.tobytes() == explicit.features.tobytes()


def test_load_model_and_sessions_carry_the_precision(tmp_path, cpu):
    from napari_mobilesam import load_model
    from napari_mobilesam.engine.session import Session
    from recipe import save_recipe_weights

    path = save_recipe_weights(tmp_path)
    with pytest.raises(MobileSAMError, match="is not a precision"):
        load_model(path, "cpu", precision="double")
    cpu(amx=True)
    model = load_model(path, "cpu", precision="auto")
    assert model.precision == "bfloat16" and "AMX" in model.precision_reason
    assert next(model.parameters()).dtype == torch.float32  # the weights stay float32
    from napari_mobilesam import Predictor

    assert Predictor(model).precision == "bfloat16"  # the model's precision is its predictors' default
    assert Predictor(model, precision="float32").precision == "float32"
    session = Session(model, precision="float16")
    assert session.predictor().precision == "float16" and session.thread_predictor().precision == "float16"
    first = session.predictor()
    session.set_precision("float32")
    assert session.predictor() is not first and session.predictor().precision == "float32"
    with pytest.raises(MobileSAMError):
        session.set_precision("fp8")

