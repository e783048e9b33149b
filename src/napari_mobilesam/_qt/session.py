"""The model, predictor and embedding cache shared by every MobileSAM widget in this napari process.

One session per process, so two widgets (or a widget and a script in napari's
console) never load the weights twice or encode the same slice twice.
Loading is lazy and runs in a worker: nothing here imports torch until the
model is first needed.
"""

from __future__ import annotations

import threading

from ..cache import EmbeddingCache


class Session:
    """Model, predictor and embedding cache, loaded lazily and thread-safe.

    ``predict_lock`` guards the predictor's current image: hold it around
    ``set_embedding`` + ``predict`` (encoding through the cache needs no lock).
    """

    def __init__(self, cache: EmbeddingCache | None = None) -> None:
        self._load_lock = threading.Lock()
        self.predict_lock = threading.RLock()
        self._predictor = None
        self._weights_source = None
        self.cache = cache if cache is not None else EmbeddingCache()

    def set_model(self, model, source: str | None = None) -> None:
        """Use ``model`` (a MobileSAM module) from now on; ``source`` names it in the status line."""
        from ..predictor import Predictor

        with self._load_lock, self.predict_lock:
            self._predictor = Predictor(model)
            self._weights_source = source or _describe_weights(model)

    def set_cache(self, cache: EmbeddingCache) -> None:
        self.cache = cache

    @property
    def has_model(self) -> bool:
        return self._predictor is not None

    def predictor(self):
        """The predictor, loading the model first if needed (slow: call it from a worker).

        Raises :class:`~napari_mobilesam.errors.MobileSAMError` when the
        weights cannot be found or downloaded; its message says how to get them.
        """
        with self._load_lock:
            if self._predictor is None:
                from ..predictor import Predictor
                from ..weights import load_model

                model = load_model()
                self._predictor = Predictor(model)
                self._weights_source = _describe_weights(model)
            return self._predictor

    def describe(self) -> str:
        """Weights and device, for the status line."""
        if self._predictor is None:
            return "weights: not loaded yet"
        return f"weights: {self._weights_source} · device: {self._predictor.device}"


def _describe_weights(model) -> str:
    path = getattr(model, "weights_path", None)
    if not path:
        return "given model (no weights file)"
    from pathlib import Path

    return Path(path).name + f" ({Path(path).parent})"


_SESSION: Session | None = None


def shared_session() -> Session:
    """The process-wide session (created on first use)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = Session()
    return _SESSION
