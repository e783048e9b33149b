"""Pick the torch device the model runs on: an explicit choice, the environment, or the best available."""

from __future__ import annotations

import os

import torch

from ..errors import MobileSAMError

DEVICE_ENV = "NAPARI_MOBILESAM_DEVICE"

_SUPPORTED = "'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_device(device: str | torch.device | None = None, *, option: str | None = None) -> torch.device:
    """The device to run MobileSAM on, checked to be usable on this machine.

    Parameters
    ----------
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``.
        ``None`` reads the environment variable ``NAPARI_MOBILESAM_DEVICE``
        (same values) when it is set, and otherwise picks CUDA if a GPU is
        available, then Apple's MPS, then the CPU.
    option
        The command-line option ``device`` came from (``"--device"``): errors
        then speak of it instead of the Python argument.

    Raises
    ------
    MobileSAMError
        The device is not a known one or is not available here (CUDA asked
        for without a CUDA build or GPU, a GPU index past the last GPU, MPS
        off a Mac). The message says what to pass instead.
    """
    if device is None:
        from_env = os.environ.get(DEVICE_ENV, "").strip()
        if not from_env:
            return _best_available()
        fix = f"unset {DEVICE_ENV} (the best available device is then used) or set it to 'cpu'"
        return _check(from_env, f"the environment variable {DEVICE_ENV}={from_env!r}", fix)
    if option:
        fix = f"pass {option} cpu, or leave out {option} to use the best available device"
        return _check(device, f"{option} {str(device)!r}", fix)
    return _check(device, f"device={str(device)!r}", "pass device='cpu', or device=None to use the best available device")


def _best_available() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _check(device: str | torch.device, source: str, fix: str) -> torch.device:
    """``device`` parsed and usable here; errors name where it came from (``source``) and what to do (``fix``)."""
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, str):
        try:
            parsed = torch.device(device.strip().lower())
        except RuntimeError:
            raise MobileSAMError(f"{source} is not a device name. Use {_SUPPORTED}; {fix}.") from None
    else:
        raise MobileSAMError(f"{source} is not a device name. Use {_SUPPORTED}; {fix}.")

    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            reason = (
                "this PyTorch was built without CUDA"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
            )
            raise MobileSAMError(f"{source} asks for a CUDA GPU, but {reason}. To run on the CPU, {fix}.")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            choices = ", ".join(f"'cuda:{i}'" for i in range(min(count, 4))) + (", ..." if count > 4 else "")
            raise MobileSAMError(
                f"{source} asks for GPU number {parsed.index}, but this machine has {count} GPU(s): {choices}. "
                f"Use one of those, or to run on the CPU, {fix}."
            )
        return parsed
    if parsed.type == "mps":
        if not _mps_available():
            raise MobileSAMError(
                f"{source} asks for Apple's MPS backend, which is only available on a Mac with Apple silicon "
                f"or an AMD GPU and macOS 12.3 or later. To run on the CPU, {fix}."
            )
        return parsed
    raise MobileSAMError(f"{source} names a device type napari-mobilesam does not support. Use {_SUPPORTED}; {fix}.")
