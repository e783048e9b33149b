"""Reading a checkpoint file safely, and saying what it is when it is not MobileSAM's."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from ..errors import MobileSAMError

WEIGHTS_FILENAME = "mobile_sam.pt"

# micro-sam's checkpoints: SAM weights (keys maybe prefixed "sam.") and the instance decoder's.
MICROSAM_KEYS = ("model_state", "decoder_state")
# Checkpoints saved by training scripts often wrap the state dict in one of these.
_WRAPPER_KEYS = ("model", "state_dict")
_SAM_BY_WIDTH = {768: "ViT-B", 1024: "ViT-L", 1280: "ViT-H"}
_SAM_BY_DEPTH = {12: "ViT-B", 24: "ViT-L", 32: "ViT-H"}
_EFFICIENT_SAM_BY_WIDTH = {192: "EfficientSAM-Ti", 384: "EfficientSAM-S"}
_SAM2_PREFIXES = ("image_encoder.trunk.", "sam_mask_decoder.", "sam_prompt_encoder.", "memory_encoder.")
_DECODER_PREFIXES = ("deconv1.", "deconv_out.", "decoder_head.", "out_conv.")
_EFFICIENT_SAM_PREFIXES = ("prompt_encoder.invalid_points.", "mask_decoder.final_output_upscaling_layers.")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a ``{key: tensor}`` dict on the CPU.

    Only tensors and plain containers are unpickled (``weights_only=True``), so a
    file cannot run code. A state dict wrapped as ``{"model": ...}`` or
    ``{"state_dict": ...}`` (as training scripts save them) is unwrapped.

    Raises
    ------
    MobileSAMError
        The path is missing or a folder, the file is truncated or damaged, or it
        holds something other than a state dict.
    """
    path = Path(path).expanduser()
    return unwrap(read_checkpoint(path), path)


def read_checkpoint(path: str | os.PathLike) -> object:
    """What a checkpoint file holds, read without running any of its code.

    Tensors and plain containers are read with ``weights_only=True``. A file
    that pickles other objects as well is refused, unless it is a micro-sam
    checkpoint (a dict with ``"model_state"`` or ``"decoder_state"``): its
    tensors are then taken through :func:`~napari_mobilesam.engine.restricted_pickle.load_inert`,
    every other object left as an inert stand-in.

    Raises
    ------
    MobileSAMError
        The path is missing or a folder, the file is truncated or damaged, or it
        pickles other objects and is not a micro-sam checkpoint.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise MobileSAMError(
            f"{path} is a folder, not a weights file. Give the path of the checkpoint file itself "
            f"(for MobileSAM: {WEIGHTS_FILENAME})."
        )
    if not path.exists():
        raise MobileSAMError(
            f"No weights file at {path}. Check the path, or use load_model() without a checkpoint to "
            f"download the official MobileSAM weights."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as error:
        raise MobileSAMError(f"Cannot read {path}: permission denied. Make the file readable or copy it.") from error
    except pickle.UnpicklingError as error:
        refused = error
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged files
        reason = f"{type(error).__name__}: {_first_sentence(str(error))}".rstrip(": ")
        raise MobileSAMError(
            f"{path} is truncated or damaged and could not be read ({reason}). Re-download: delete "
            f"{path} and download it again (load_model() fetches the official weights by itself)."
        ) from error
    loaded = _read_microsam_tensors(path)
    if loaded is not None:
        return loaded
    raise MobileSAMError(
        f"{path} could not be loaded as plain weights{_refused_detail(refused)}: either it is damaged, or it "
        f"holds Python objects other than tensors (such as a whole pickled model), which are refused because "
        f"unpickling them can run arbitrary code. If it is damaged, delete {path} and download it again; "
        f"if you made it, save only the weights with torch.save(model.state_dict(), path)."
    ) from refused


def _read_microsam_tensors(path: Path) -> dict | None:
    """A micro-sam checkpoint's top-level dict with its other objects inert, or None if the file is not one."""
    from .restricted_pickle import load_inert

    try:
        loaded = load_inert(path)
    except Exception:  # whatever it is, it is refused as it was by weights_only
        return None
    if isinstance(loaded, dict) and any(key in loaded for key in MICROSAM_KEYS):
        return loaded
    return None


def _refused_detail(error: Exception) -> str:
    # torch's message is long; keep its one line that names the refused object, if any.
    for line in str(error).splitlines():
        if "GLOBAL" in line:
            return f" ({_first_sentence(line)})"
    return ""


def _first_sentence(text: str, limit: int = 200) -> str:
    sentence = text.strip().splitlines()[0].split(". ")[0].rstrip(".") if text.strip() else ""
    return sentence[:limit]


def unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The plain ``{key: tensor}`` state dict in ``loaded`` (unwrapped from ``{"model": ...}``), or a clear error."""
    state = loaded
    while isinstance(state, dict) and not _is_tensor_dict(state):
        inner = next((state[key] for key in _WRAPPER_KEYS if isinstance(state.get(key), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict):
        raise MobileSAMError(
            f"{path} holds a {type(state).__name__}, not a state dict (a dict of tensors). "
            f"Use MobileSAM's {WEIGHTS_FILENAME}, or a file saved with torch.save(model.state_dict(), path)."
        )
    if not state:
        raise MobileSAMError(f"{path} holds an empty dict, no weights. Use MobileSAM's {WEIGHTS_FILENAME}.")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise MobileSAMError(
                f"{path} is not a plain state dict: its entry {key!r} is a {type(value).__name__}, not a tensor. "
                f"Use MobileSAM's {WEIGHTS_FILENAME}, or a file saved with torch.save(model.state_dict(), path)."
            )
    return dict(state)


def _is_tensor_dict(mapping: dict) -> bool:
    return bool(mapping) and all(isinstance(value, torch.Tensor) for value in mapping.values())


def check_fits(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise a MobileSAMError naming missing/unexpected keys and wrong shapes, if any."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise MobileSAMError(
            f"{path} is not a MobileSAM checkpoint: {_describe_checkpoint(state)}. "
            f"{_key_list('Missing', missing)}{_key_list('Unexpected', unexpected)}"
            f"Use MobileSAM's {WEIGHTS_FILENAME} (load_model() without a checkpoint downloads it); "
            f"other SAM variants do not fit this model."
        )
    wrong = [key for key, tensor in expected.items() if state[key].shape != tensor.shape]
    if wrong:
        first = wrong[0]
        raise MobileSAMError(
            f"{path} has MobileSAM's keys but {len(wrong)} tensor(s) of the wrong shape, e.g. {first}: "
            f"{tuple(state[first].shape)} in the file, {tuple(expected[first].shape)} expected. It comes from a "
            f"differently sized model; use MobileSAM's {WEIGHTS_FILENAME}."
        )


def _key_list(label: str, keys: list[str], limit: int = 5) -> str:
    if not keys:
        return ""
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{label} keys ({len(keys)}): {', '.join(keys[:limit])}{more}. "


def _describe_checkpoint(state: dict[str, torch.Tensor]) -> str:
    """A clause saying which model a state dict that is not MobileSAM's seems to come from."""
    keys = list(state)
    if any(key.startswith(_SAM2_PREFIXES) for key in keys):
        return "it looks like a SAM 2 checkpoint"
    patch = state.get("image_encoder.patch_embed.proj.weight")
    width = int(patch.shape[0]) if patch is not None and patch.ndim == 4 else None
    if any(key.startswith(_EFFICIENT_SAM_PREFIXES) for key in keys):
        return f"it looks like an {_EFFICIENT_SAM_BY_WIDTH.get(width, 'EfficientSAM')} checkpoint"
    block_ids = {int(match[1]) for key in keys if (match := re.match(r"image_encoder\.blocks\.(\d+)\.", key))}
    if block_ids or width is not None or "image_encoder.pos_embed" in state:
        size = _SAM_BY_WIDTH.get(width) or _SAM_BY_DEPTH.get(max(block_ids, default=-1) + 1)
        return f"it looks like a SAM {size} checkpoint" if size else "it looks like a SAM (ViT) checkpoint"
    if any(key.startswith(_DECODER_PREFIXES) for key in keys):
        return "it looks like micro-sam's instance decoder: pass it as the decoder (decoder=, --decoder)"
    if any(key.startswith("image_encoder.layers.") for key in keys):
        return "it looks like a MobileSAM (TinyViT) checkpoint from a modified model, with keys that differ"
    head = keys[0].split(".", 1)[0] + "."
    if all(key.startswith(head) for key in keys) and any(
        key.removeprefix(head).startswith(("image_encoder.", "mask_decoder.")) for key in keys
    ):
        return f"every key starts with {head!r} (saved from a wrapper model); remove that prefix from the keys"
    return "it does not look like any SAM model's state dict"
