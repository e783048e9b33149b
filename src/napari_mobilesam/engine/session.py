"""The one place that holds a loaded model, the predictors over it and an embedding cache.

- :func:`default_session`: the process-wide session of a napari window and its
  console. The dock widget, the menu command, and :func:`~napari_mobilesam.segment_stack`,
  :func:`~napari_mobilesam.segment_everything` or :func:`~napari_mobilesam.segment_from_prompts`
  called without a model share its model (the default weights, loaded once, on
  first use) and its embedding cache, so a slice encoded by one is never encoded
  again by another.
- :func:`process_session`: the session of a batch process (the command line,
  a dask worker) for a model, its files, a device and a disk-cache folder; the
  model is loaded once per process for each model, files and device.
- :func:`resolve_predictor` and :func:`resolve_cache`: what every public
  function does with its ``model=``, ``predictor=`` and ``cache=`` arguments.

Nothing here imports torch until a model is loaded.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..cache.embedding_cache import EmbeddingCache


class Session:
    """A model (loaded lazily, once, thread-safe), predictors over it and an embedding cache.

    Args:
        model: a loaded MobileSAM; default: :func:`~napari_mobilesam.load_model` with
            ``weights`` and ``device``, on first use.
        cache: the embedding cache; default: a new :class:`EmbeddingCache` (memory and disk).
        weights, device: what the model is loaded from and onto (default: as ``load_model``).
        threads: torch CPU threads to set when the model is loaded (default: leave torch's).
        model_name, decoder: the registered model to load (default: ``NAPARI_MOBILESAM_MODEL``
            or ``mobile_sam``) and a local decoder file (default: the model's own), as ``load_model``'s
            ``model=`` and ``decoder=``. :meth:`switch_model` changes the model.
        precision: the encoder's precision for every predictor (``"float32"``, ``"bfloat16"``,
            ``"float16"`` or ``"auto"``, see :mod:`~napari_mobilesam.engine.precision`;
            default: the model's, float32 unless loaded otherwise); :meth:`set_precision` changes it.

    :meth:`predictor` is one predictor shared by interactive work (the widget):
    hold :attr:`predict_lock` around making an image current and decoding it.
    Batch work takes :meth:`new_predictor` (its own current image) or
    :meth:`thread_predictor` (one per thread, kept).
    """

    def __init__(
        self,
        model=None,
        cache: EmbeddingCache | None = None,
        *,
        weights=None,
        device=None,
        threads=None,
        model_name: str | None = None,
        decoder=None,
        precision=None,
    ):
        self._load_lock = threading.Lock()
        self.predict_lock = threading.RLock()
        self._model = model
        self._weights, self._device, self._threads = weights, device, threads
        self._model_name, self._decoder = model_name, decoder
        self._source = _describe_weights(model) if model is not None else None
        self._predictor = None
        self._per_thread = threading.local()
        self.cache = cache if cache is not None else EmbeddingCache()
        #: How many times this session loaded a model from a weights file.
        self.loads = 0
        self._precision = precision

    # -- the model ---------------------------------------------------------------

    @property
    def has_model(self) -> bool:
        """Whether the model is loaded (asking :meth:`model` would not load it)."""
        return self._model is not None

    def model(self):
        """The model, loading it first if needed (slow: call it from a worker in a GUI).

        Raises :class:`~napari_mobilesam.errors.MobileSAMError` when the weights
        cannot be found, downloaded or read; its message says what to do.
        """
        with self._load_lock:
            if self._model is None:
                from .gc_freeze import host_objects_frozen
                from .native_preload import preload_torch_library

                preload_torch_library()  # first, so that torch's import never holds Python's lock for long
                with host_objects_frozen():  # nor do the garbage collections its objects trigger
                    from .weights import load_model

                    if self._threads:
                        import torch

                        torch.set_num_threads(int(self._threads))
                    self._model = load_model(
                        self._weights, self._device, model=self._model_name, decoder=self._decoder
                    )
                self._source = _describe_weights(self._model)
                self.loads += 1
            return self._model

    def set_model(self, model, source: str | None = None) -> None:
        """Use ``model`` (a MobileSAM module) from now on; ``source`` names it in :meth:`describe`."""
        with self._load_lock, self.predict_lock:
            self._model = model
            self._source = source or _describe_weights(model)
            self._predictor = None
            self._per_thread = threading.local()

    def switch_model(self, model_name: str):
        """Load the registered model ``model_name`` (its own files, this session's device) and use it from now on.

        Slow (a download the first time): call it from a worker in a GUI. Work
        under way finishes with the model it started with; embeddings of the
        other model stay in the cache (their keys differ). Returns the model.
        """
        from .weights import load_model

        model = load_model(None, self._device, model=model_name)
        with self._load_lock:
            self._weights, self._decoder, self._model_name = None, None, model_name
        self.set_model(model)
        self.loads += 1
        return model

    @property
    def model_name(self) -> str:
        """The registered name of the model in use (or to be loaded); ``"custom"`` for a given model without one."""
        if self._model is not None:
            return getattr(self._model, "model_name", None) or "custom"
        if self._model_name is not None:
            return self._model_name
        from ..errors import MobileSAMError
        from .model_registry import MODEL_ENV, default_model_name

        try:
            return default_model_name()
        except MobileSAMError:  # a bad NAPARI_MOBILESAM_MODEL: loading the model says so
            return os.environ[MODEL_ENV].strip()

    @property
    def has_instance_decoder(self) -> bool:
        """Whether the model (loaded, or to be loaded) has an instance decoder (can run AIS and APG)."""
        if self._model is not None:
            return getattr(self._model, "instance_decoder", None) is not None
        from .model_registry import MODELS

        spec = MODELS.get(self.model_name)
        return self._decoder is not None or (spec is not None and spec.has_decoder)

    def set_cache(self, cache: EmbeddingCache) -> None:
        """Use ``cache`` from now on."""
        self.cache = cache

    # -- predictors --------------------------------------------------------------

    def predictor(self):
        """The predictor shared by interactive work; guard its current image with :attr:`predict_lock`."""
        model = self.model()
        with self._load_lock:
            if self._predictor is None or self._predictor.model is not model:
                from .predictor import Predictor

                self._predictor = Predictor(model, self._precision)
            return self._predictor

    def new_predictor(self):
        """A predictor of its own over the session's model (its current image is nobody else's)."""
        from .predictor import Predictor

        return Predictor(self.model(), self._precision)

    def thread_predictor(self):
        """This thread's predictor over the session's model, made on first use and kept."""
        model = self.model()
        predictor = getattr(self._per_thread, "predictor", None)
        if predictor is None or predictor.model is not model:
            from .predictor import Predictor

            predictor = self._per_thread.predictor = Predictor(model, self._precision)
        return predictor

    def set_precision(self, precision: str | None) -> None:
        """Encode in ``precision`` from now on (the model stays: its weights are cast when first needed)."""
        from .precision import check_precision

        precision = None if precision is None else check_precision(precision)
        with self._load_lock, self.predict_lock:
            self._precision = precision
            self._predictor = None
            self._per_thread = threading.local()

    @property
    def precision(self) -> str | None:
        """The precision asked for (``None``: the model's)."""
        return self._precision

    def describe(self) -> str:
        """Weights, device and the encoder's precision, for a status line."""
        model = self._model
        if model is None:
            return "weights: not loaded yet"
        text = f"weights: {self._source} · device: {model.device}"
        predictor = self._predictor
        precision = predictor.precision if predictor is not None else (self._precision or "")
        return text + (f" · {precision}" if precision and precision != "float32" else "")


def _describe_weights(model) -> str:
    path = getattr(model, "weights_path", None)
    if not path:
        return "given model (no weights file)"
    name = getattr(model, "model_name", None)
    return (f"{name}, " if name else "") + Path(path).name + f" ({Path(path).parent})"


_DEFAULT: Session | None = None
_SESSIONS: dict[tuple, Session] = {}
_MODELS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def default_session() -> Session:
    """The process-wide session (created on first use; the model loads when first needed)."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = Session()
        return _DEFAULT


def set_default_session(session: Session | None) -> Session | None:
    """Make ``session`` the process-wide one (None: a fresh one on next use); returns the previous one."""
    global _DEFAULT
    with _LOCK:
        previous, _DEFAULT = _DEFAULT, session
        return previous


def process_session(
    weights: str | None,
    device: str | None = None,
    cache_dir: str | None = None,
    threads: int | None = None,
    *,
    model_name: str | None = None,
    decoder: str | None = None,
    precision: str | None = None,
) -> Session:
    """This process's session for the model ``model_name`` (its ``weights`` and ``decoder`` files) on ``device``
    with the disk cache ``cache_dir`` (None: memory only).

    Made on first use and kept, like the model, which is loaded once per model, files
    and device and shared by the sessions of every cache folder and precision. The
    cache keeps nothing in memory: batch work uses each slice once.
    """
    model_key = (weights, device, model_name, decoder)
    key = (*model_key, cache_dir, precision)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            model = _MODELS.get(model_key)
            cache = EmbeddingCache(memory_bytes=0, directory=cache_dir)
            session = Session(
                model,
                cache,
                weights=weights,
                device=device,
                threads=threads,
                model_name=model_name,
                decoder=decoder,
                precision=precision,
            )
            _SESSIONS[key] = session
    if not session.has_model:
        model = session.model()
        with _LOCK:
            _MODELS.setdefault(model_key, model)
    return session


def model_loads() -> int:
    """Models this process has loaded for :func:`process_session` (a dask worker loads one per weights and device)."""
    with _LOCK:
        return sum(session.loads for session in _SESSIONS.values())


def resolve_predictor(model=None, predictor=None):
    """``predictor`` if given, else a new predictor over ``model``, else one over the default session's model."""
    if predictor is not None:
        return predictor
    if model is not None:
        from .predictor import Predictor

        return Predictor(model)
    return default_session().new_predictor()


def resolve_cache(cache: EmbeddingCache | None = None) -> EmbeddingCache:
    """``cache`` if given, else the default session's (shared with the widget and the console)."""
    return cache if cache is not None else default_session().cache
