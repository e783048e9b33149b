"""A stand-in encoder for cache tests: deterministic embeddings, counted encodes, a gate to hold one."""

from __future__ import annotations

import threading

import numpy as np

from napari_mobilesam.engine.embedding import EMBEDDING_SHAPE, ImageEmbedding
from napari_mobilesam.engine.preprocessing import preprocess_shape

_PATTERN = (np.arange(np.prod(EMBEDDING_SHAPE), dtype=np.float32).reshape(EMBEDDING_SHAPE) % 251) / 251


def fake_embedding(image, contrast_limits=None) -> ImageEmbedding:
    """Deterministic, content- and contrast-dependent, never all zeros."""
    image = np.asarray(image, dtype=np.float64)
    offset = 1.0 + image.mean()
    if contrast_limits is not None:
        offset += 0.5 * contrast_limits[0] + 0.25 * contrast_limits[1]
    height, width = image.shape[:2]
    return ImageEmbedding(_PATTERN + np.float32(offset), (height, width), preprocess_shape(height, width))


class FakeModel:
    def __init__(self, sha256: str = "a" * 64) -> None:
        self.weights_sha256 = sha256


class FakePredictor:
    """Counts encodes; ``gate`` (an Event) makes ``embed`` wait until it is set."""

    def __init__(self, sha256: str = "a" * 64, gate: threading.Event | None = None) -> None:
        self.model = FakeModel(sha256)
        self.calls = 0
        self.started = threading.Event()
        self.gate = gate
        self._lock = threading.Lock()

    def embed(self, image, contrast_limits=None) -> ImageEmbedding:
        with self._lock:
            self.calls += 1
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return fake_embedding(image, contrast_limits)


def image(seed: int = 0, shape=(40, 60)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.uint16)
