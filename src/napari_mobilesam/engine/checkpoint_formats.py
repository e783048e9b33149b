"""The checkpoint formats a model is read from: SAM weights, micro-sam's combined files, instance decoder files.

- **A plain SAM state dict** (``mobile_sam.pt``, micro-sam's zoo ``vit_t.pt``),
  also wrapped as ``{"model": ...}`` or ``{"state_dict": ...}``.
- **micro-sam's combined files**: ``{"model_state": {...}, "decoder_state": {...}}``
  -- its export (SAM keys as they are) and its training checkpoints (SAM keys
  prefixed ``"sam."``, which is removed; optimizer states and other pickled
  objects besides, read without running them, see :func:`~napari_mobilesam.engine.checkpoint.read_checkpoint`).
  The decoder comes from the same file.
- **A plain instance decoder state dict** (micro-sam's ``vit_t_decoder.pt``: the
  UNETR's keys that do not start with ``encoder``, 66 for ``vit_t``), or a
  combined file's ``"decoder_state"``.

Every key is checked strictly where the model is built (missing or unexpected
keys are one error naming the first few).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MobileSAMError
from .checkpoint import MICROSAM_KEYS, read_checkpoint, unwrap

_SAM_PREFIX = "sam."


@dataclass(frozen=True)
class SamCheckpoint:
    """What a SAM checkpoint file holds: the SAM state dict and, from a micro-sam file, its decoder's (or None)."""

    sam: dict[str, torch.Tensor]
    decoder: dict[str, torch.Tensor] | None
    format: str  # "state dict" or "micro-sam"


def read_sam_checkpoint(path: str | os.PathLike) -> SamCheckpoint:
    """The SAM weights (and a micro-sam file's decoder weights) in ``path``, as plain ``{key: tensor}`` dicts."""
    path = Path(path).expanduser()
    loaded = read_checkpoint(path)
    if not _is_microsam(loaded):
        return SamCheckpoint(unwrap(loaded, path), None, "state dict")
    if loaded.get("model_state") is None:
        raise MobileSAMError(
            f"{path} holds only an instance decoder ('decoder_state'), no SAM weights ('model_state'); pass it "
            "as the decoder (decoder=, --decoder) together with the model's SAM weights."
        )
    sam = _tensors(loaded["model_state"], path, "model_state")
    sam = {key.removeprefix(_SAM_PREFIX): value for key, value in sam.items()}
    decoder = loaded.get("decoder_state")
    return SamCheckpoint(sam, None if decoder is None else _tensors(decoder, path, "decoder_state"), "micro-sam")


def read_decoder_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The instance decoder weights in ``path``: a plain decoder state dict, or a micro-sam file's ``decoder_state``."""
    path = Path(path).expanduser()
    loaded = read_checkpoint(path)
    if _is_microsam(loaded):
        if loaded.get("decoder_state") is None:
            raise MobileSAMError(
                f"{path} is a micro-sam checkpoint without an instance decoder ('decoder_state'); give the decoder "
                "file of the model (e.g. vit_t_decoder.pt), or a checkpoint trained with one."
            )
        return _tensors(loaded["decoder_state"], path, "decoder_state")
    return unwrap(loaded, path)


def build_decoder(state: dict[str, torch.Tensor], path: str | os.PathLike):
    """micro-sam's :class:`~napari_mobilesam.model.instance_decoder.InstanceDecoder` from ``state``, strictly;
    a file that is not one is one error naming ``path`` and the first few keys that do not fit."""
    from ..model.instance_decoder import build_instance_decoder

    try:
        return build_instance_decoder(state)
    except MobileSAMError as error:
        raise MobileSAMError(f"{path}: {error}") from None


def _is_microsam(loaded: object) -> bool:
    return isinstance(loaded, dict) and any(key in loaded for key in MICROSAM_KEYS)


def _tensors(state: object, path: Path, entry: str) -> dict[str, torch.Tensor]:
    """``state`` as a plain ``{key: tensor}`` dict, or one error naming the entry and what it holds instead."""
    from .restricted_pickle import inert_names

    if isinstance(state, dict):
        bad = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
        if state and not bad:
            return dict(state)
    refused = inert_names(state)
    if refused:
        detail = f"pickled Python objects ({', '.join(refused)}) that were not unpickled, as they could run code"
    elif isinstance(state, dict) and state:
        detail = f"{bad[0]!r}, a {type(state[bad[0]]).__name__} and not a tensor"
    else:
        detail = f"a {type(state).__name__}, not a dict of tensors" if state else "nothing"
    raise MobileSAMError(
        f"{path} is a micro-sam checkpoint whose {entry!r} holds {detail}. Save the weights as a plain "
        f"state dict (torch.save(model.state_dict(), path)), or use micro-sam's exported files."
    )
