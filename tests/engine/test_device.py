"""resolve_device: explicit names, the environment variable, automatic choice, and clear errors."""

from __future__ import annotations

import pytest
import torch

from napari_mobilesam.engine.device import DEVICE_ENV, resolve_device
from napari_mobilesam.errors import MobileSAMError

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.fixture(autouse=True)
def _no_device_env(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)


def _fake_accelerators(monkeypatch, cuda_count: int = 0, mps: bool = False) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu_is_always_available(name):
    assert resolve_device(name) == torch.device("cpu")


def test_automatic_choice_prefers_cuda_then_mps_then_cpu(monkeypatch):
    _fake_accelerators(monkeypatch, cuda_count=1, mps=True)
    assert resolve_device().type == "cuda"
    _fake_accelerators(monkeypatch, cuda_count=0, mps=True)
    assert resolve_device() == torch.device("mps")
    _fake_accelerators(monkeypatch, cuda_count=0, mps=False)
    assert resolve_device() == torch.device("cpu")


def test_automatic_choice_on_this_machine_is_usable():
    device = resolve_device()
    torch.zeros(2, device=device)  # would raise if the device were not usable


def test_environment_variable_is_used_when_no_device_is_given(monkeypatch):
    _fake_accelerators(monkeypatch, cuda_count=1)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device() == torch.device("cpu")


def test_empty_environment_variable_means_automatic(monkeypatch):
    _fake_accelerators(monkeypatch)
    monkeypatch.setenv(DEVICE_ENV, "  ")
    assert resolve_device() == torch.device("cpu")


def test_explicit_device_wins_over_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "no-such-device")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_with_an_index_is_checked_against_the_gpu_count(monkeypatch):
    _fake_accelerators(monkeypatch, cuda_count=2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(MobileSAMError, match=r"GPU number 5.*has 2.*cuda:0.*cuda:1.*device='cpu'"):
        resolve_device("cuda:5")


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda_says_to_use_the_cpu(name):
    with pytest.raises(MobileSAMError, match=r"CUDA.*device='cpu'"):
        resolve_device(name)


@needs_cuda
def test_real_cuda_device_is_accepted():
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(MobileSAMError, match="GPU number"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_mps_off_a_mac_says_to_use_the_cpu(monkeypatch):
    _fake_accelerators(monkeypatch, mps=False)
    with pytest.raises(MobileSAMError, match=r"MPS.*Mac.*device='cpu'"):
        resolve_device("mps")


def test_mps_when_available(monkeypatch):
    _fake_accelerators(monkeypatch, mps=True)
    assert resolve_device("mps") == torch.device("mps")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "tpu:0", 3.5])
def test_unknown_names_are_refused(name):
    with pytest.raises(MobileSAMError, match=r"'cpu', 'cuda', 'cuda:N' or 'mps'"):
        resolve_device(name)


def test_unsupported_device_types_are_refused():
    with pytest.raises(MobileSAMError, match="does not support"):
        resolve_device("meta")


def test_bad_environment_variable_says_to_unset_it(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "garbage")
    with pytest.raises(MobileSAMError, match=rf"{DEVICE_ENV}='garbage'.*unset {DEVICE_ENV}"):
        resolve_device()


@needs_no_cuda
def test_unavailable_device_from_environment_says_to_unset_it(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(MobileSAMError, match=rf"unset {DEVICE_ENV}.*'cpu'"):
        resolve_device()


@needs_no_cuda
def test_a_command_line_option_is_named_in_its_own_words():
    with pytest.raises(MobileSAMError, match="--device 'cuda' asks for a CUDA GPU") as error:
        resolve_device("cuda", option="--device")
    assert "pass --device cpu, or leave out --device" in str(error.value) and "device=" not in str(error.value)
