"""The key an embedding is cached under: what the encoder saw, and with which weights.

A key is a BLAKE2b hash of the slice's pixels (bytes, shape, dtype), the
model's weights checksum (:func:`model_checksum`), the contrast limits (or,
without them, the model's input normalisation), :data:`PREPROCESSING_VERSION`
and the encoder's precision. Other weights, another model, other contrast,
another precision or an edited slice therefore get another key, miss and are
encoded again. :func:`maps_key` extends a slice's key with the instance
decoder's checksum.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import MobileSAMError

# Bump when preprocessing changes what the encoder sees: old cached embeddings then miss.
PREPROCESSING_VERSION = 1
_CHECKSUM_ATTR = "_napari_mobilesam_checksum"


def model_checksum(model) -> str:
    """A string that changes when the model's weights change.

    ``model.weights_sha256`` (set by :func:`~napari_mobilesam.load_model`) when
    present; otherwise a BLAKE2b hash of the state dict (names, dtypes, shapes,
    bytes, in key order), computed once and kept on the model as
    ``_napari_mobilesam_checksum`` -- weights edited in place afterwards are not noticed.
    """
    sha256 = getattr(model, "weights_sha256", None)
    if sha256:
        return f"sha256:{sha256}"
    cached = getattr(model, _CHECKSUM_ATTR, None)
    if cached:
        return cached
    import torch

    digest = hashlib.blake2b(digest_size=32)
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    checksum = f"blake2b:{digest.hexdigest()}"
    setattr(model, _CHECKSUM_ATTR, checksum)
    return checksum


def slice_key(
    image_slice, model, contrast_limits: tuple[float, float] | None = None, precision: str = "float32"
) -> str:
    """Hex key of one 2D slice ``(H, W)`` or ``(H, W, C)`` encoded by ``model`` with ``contrast_limits``.

    ``precision``: the encoder's (``Predictor.precision``); embeddings of
    different precisions never share a key. Float32 keys are those made
    before precisions existed, so caches written then still hit.
    """
    pixels = np.ascontiguousarray(np.asarray(image_slice))
    if pixels.dtype.hasobject:
        raise MobileSAMError(f"Cannot cache an image of dtype {pixels.dtype}; pass numbers (int, float or bool).")
    if contrast_limits is None:
        # Without limits the model's own normalisation decides what the encoder sees (engine.preprocessing).
        normalization = getattr(model, "input_normalization", "percentiles")
        limits = "auto" if normalization == "percentiles" else f"auto:{normalization}"
    else:
        limits = ",".join(f"{float(v):.9g}" for v in contrast_limits)
    digest = hashlib.blake2b(digest_size=32)
    header = f"napari-mobilesam|pre{PREPROCESSING_VERSION}|{pixels.dtype.str}|{pixels.shape}|{limits}|"
    if precision != "float32":
        header += f"{precision}|"
    digest.update(header.encode())
    digest.update(model_checksum(model).encode())
    digest.update(b"|")
    digest.update(pixels.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def maps_key(slice_key: str, decoder) -> str:
    """Hex key of the instance maps of the slice keyed ``slice_key``, decoded by ``decoder`` (its weights' checksum)."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"napari-mobilesam|maps|{slice_key}|{model_checksum(decoder)}".encode())
    return digest.hexdigest()
