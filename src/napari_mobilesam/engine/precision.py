"""The arithmetic precision of the image encoder: ``float32`` (exact, the default), ``bfloat16``, ``float16`` or ``auto``.

Reduced precision pays only where the hardware computes in it natively;
elsewhere it is emulated and slower than float32. ``auto`` therefore picks:

- **bfloat16** on a CUDA GPU that computes it natively (compute capability
  8.0 or later: ``torch.cuda.is_bf16_supported(including_emulation=False)``);
- **bfloat16** on a CPU with Intel AMX tiles or AVX512-BF16 instructions, as
  torch's own probes report them (``torch.cpu._is_amx_tile_supported()``,
  ``torch.cpu._is_avx512_bf16_supported()``; where this torch lacks them, the
  ``amx_bf16``/``avx512_bf16`` flags of ``/proc/cpuinfo``), and only when
  torch has oneDNN (``torch.backends.mkldnn.is_available()``), which runs
  the encoder's convolutions and products on them;
- **float16** on Apple's MPS;
- **float32** everywhere else.

Whatever the precision, the embedding is float32 and the decoder runs in
float32: only the encoder's convolutions, products and attention are reduced.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MobileSAMError
from ..segment.param_fields import check_settings, setting

PRECISIONS = ("float32", "bfloat16", "float16")
CHOICES = ("auto", *PRECISIONS)
DEFAULT = "float32"
_CPUINFO = "/proc/cpuinfo"


@dataclass(frozen=True)
class EncoderSettings:
    """The encoder's settings, declared once for the API, the command line (``--precision``) and the widget.

    Attributes:
        precision: ``"float32"`` (exact, the default), ``"bfloat16"``, ``"float16"``, or
            ``"auto"``: reduced where the device computes it natively.
    """

    precision: str = setting(
        DEFAULT,
        choices=CHOICES,
        help="the image encoder's arithmetic: float32 (exact), bfloat16 or float16, or auto: reduced where the "
        "device computes it natively ('napari-mobilesam info' says what auto picks here)",
    )

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision used (``name``, one of :data:`PRECISIONS`) and why, in a sentence for the user."""

    name: str
    reason: str

    @property
    def dtype(self):
        """The torch dtype of ``name``."""
        return torch_dtype(self.name)


def torch_dtype(name: str):
    """``"bfloat16"`` -> ``torch.bfloat16`` (and so on for :data:`PRECISIONS`)."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def check_precision(precision: str | None, option: str = "precision") -> str:
    """``precision`` checked to be one of :data:`CHOICES` (``None``: :data:`DEFAULT`)."""
    if precision is None:
        return DEFAULT
    value = str(precision).strip().lower()
    if value not in CHOICES:
        shown = ", ".join(repr(c) for c in CHOICES)
        raise MobileSAMError(f"{option} {precision!r} is not a precision; use one of {shown}.")
    return value


def choose_precision(device, precision: str | None = DEFAULT) -> PrecisionChoice:
    """The precision the encoder runs in on ``device`` (a ``torch.device`` or its name) when asked for ``precision``.

    An explicit precision is used as asked (its reason notes when the device
    only emulates it); ``"auto"`` follows the rules of the module doc.
    """
    precision = check_precision(precision)
    native, how = native_reduced_precision(device)
    if precision != "auto":
        if precision == "float32":
            return PrecisionChoice("float32", "exact, the default")
        note = "native here" if native == precision else f"emulated here, slower than float32 ({how})"
        return PrecisionChoice(precision, f"asked for; {note}")
    if native is None:
        return PrecisionChoice("float32", f"auto: {how}")
    return PrecisionChoice(native, f"auto: {how}")


def native_reduced_precision(device) -> tuple[str | None, str]:
    """``(precision, how it was found)``: the reduced precision ``device`` computes natively, or ``None``."""
    kind = str(getattr(device, "type", device)).split(":")[0]
    if kind == "cuda":
        return _cuda_bf16(device)
    if kind == "mps":
        return "float16", "Apple MPS computes float16 natively"
    if kind == "cpu":
        return _cpu_bf16()
    return None, f"no reduced precision known for device {kind!r}"


def _cuda_bf16(device) -> tuple[str | None, str]:
    import torch

    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch before the including_emulation argument
        native = torch.cuda.is_bf16_supported()
    index = getattr(device, "index", None)
    name = torch.cuda.get_device_name(index) if torch.cuda.is_available() else "no CUDA GPU"
    if native:
        return "bfloat16", f"{name} computes bfloat16 natively (torch.cuda.is_bf16_supported)"
    return None, f"{name} has no native bfloat16 (compute capability below 8.0)"


def cpu_bf16_features() -> dict[str, bool | None]:
    """What this CPU and torch offer for bfloat16: ``amx``, ``avx512_bf16`` (``None``: unknown) and ``onednn``."""
    import torch

    cpu = getattr(torch, "cpu", None)
    features = {}
    for feature, probe, flag in (
        ("amx", "_is_amx_tile_supported", "amx_bf16"),
        ("avx512_bf16", "_is_avx512_bf16_supported", "avx512_bf16"),
    ):
        found = getattr(cpu, probe, None)
        try:
            features[feature] = bool(found()) if found is not None else _cpuinfo_has(flag)
        except Exception:  # noqa: BLE001  a probe that fails is no evidence either way
            features[feature] = _cpuinfo_has(flag)
    features["onednn"] = bool(torch.backends.mkldnn.is_available())
    return features


def _cpu_bf16() -> tuple[str | None, str]:
    features = cpu_bf16_features()
    native = [name for name in ("amx", "avx512_bf16") if features[name]]
    if native and features["onednn"]:
        what = " and ".join({"amx": "AMX", "avx512_bf16": "AVX512-BF16"}[n] for n in native)
        return "bfloat16", f"this CPU has {what} and torch has oneDNN"
    if native:
        return None, "this CPU has bfloat16 instructions, but this torch has no oneDNN to use them"
    return None, "this CPU has neither AMX nor AVX512-BF16: bfloat16 would be emulated"


def _cpuinfo_has(flag: str) -> bool | None:
    """Whether ``/proc/cpuinfo`` lists ``flag`` (``None`` where there is no such file, off Linux)."""
    try:
        with open(_CPUINFO) as file:
            text = file.read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return flag in line.split(":", 1)[-1].split()
    return False
