"""One slice of a stack, in whichever process runs it: the job, the per-process model and cache.

The unit of work is one 2D slice (:func:`run_slice`): encode it (through the
embedding cache) and, for ``segment``, segment everything on it. The runners
of :mod:`napari_mobilesam.distributed` call this very function, in this
process or on dask workers, so a cluster run gives exactly the labels of a
run in this process.

Each process (a dask worker, or the client running locally) loads the model
once, keyed by weights and device, and keeps it for every later slice; it
keeps one embedding cache per cache folder, and one predictor per thread.

dask pickles :func:`run_slice` and :class:`SliceJob` by reference
(``napari_mobilesam.distributed_worker.run_slice``): a worker imports this
module, so it imports only numpy at the top; torch and the model come in
when the first slice runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SliceJob:
    """Everything a worker needs to process one slice of a stack (small and picklable).

    ``task`` is ``"segment"`` or ``"embed"``; ``shape``, ``dtype`` and ``rgb``
    describe the whole stack (ids and the cache depend on the slice's place
    in it); ``weights`` is a path every worker can read; ``cache_dir`` the
    disk cache folder (``None``: memory only); ``threads``: torch threads per
    worker process (``None``: torch's default); ``params``: segment-everything
    parameters as ``(name, value)`` pairs.
    """

    task: str
    weights: str
    shape: tuple[int, ...]
    dtype: str
    rgb: bool
    image_id: str | None = None
    device: str | None = None
    threads: int | None = None
    cache_dir: str | None = None
    contrast_limits: tuple[float, float] | None = None
    sampler: str = "grid"
    params: tuple[tuple[str, object], ...] = field(default_factory=tuple)

    @property
    def n_slices(self) -> int:
        rgb_axes = 3 if self.rgb else 2
        return int(np.prod(self.shape[: len(self.shape) - rgb_axes], dtype=np.int64))


# -- what this process keeps between slices ---------------------------------------

_lock = threading.Lock()
_models: dict[tuple, object] = {}
model_loads = 0  # models loaded by this process (a worker loads one per weights and device)
_caches: dict[str | None, object] = {}
_predictors = threading.local()


def worker_model(weights: str, device: str | None = None, threads: int | None = None):
    """The model of this process for ``weights`` on ``device``, loaded on first use and then kept."""
    global model_loads
    with _lock:
        key = (weights, device)
        model = _models.get(key)
        if model is None:
            import torch

            from .weights import load_model

            if threads:
                torch.set_num_threads(int(threads))
            model = _models[key] = load_model(weights, device)
            model_loads += 1
        return model


def _worker_cache(cache_dir: str | None):
    from .cache import EmbeddingCache

    with _lock:
        cache = _caches.get(cache_dir)
        if cache is None:
            # Each slice is used once per run: memory would only hold finished work.
            cache = _caches[cache_dir] = EmbeddingCache(memory_bytes=0, directory=cache_dir)
        return cache


def _worker_predictor(model):
    from .predictor import Predictor

    # One predictor per thread: a predictor holds the current image, the model is shared.
    predictors = getattr(_predictors, "by_model", None)
    if predictors is None:
        predictors = _predictors.by_model = {}
    predictor = predictors.get(id(model))
    if predictor is None:
        predictor = predictors[id(model)] = Predictor(model)
    return predictor


# -- one slice ---------------------------------------------------------------------


class _OneSlice:
    """Stands for the whole stack but holds one plane: ``iter_segment_stack`` then numbers it as in the stack."""

    def __init__(self, job: SliceJob, position: tuple[int, ...], plane: np.ndarray) -> None:
        self.shape, self.dtype, self.ndim = job.shape, np.dtype(job.dtype), len(job.shape)
        self._position, self._plane = position, plane

    def __getitem__(self, index):
        if tuple(index) != self._position:
            raise IndexError(f"only slice {self._position} is here, not {index}")
        return self._plane


def slice_position(job: SliceJob, slice_index: int) -> tuple[int, ...]:
    """The index over the leading axes of flat slice ``slice_index`` (C order)."""
    rgb_axes = 3 if job.rgb else 2
    leading = job.shape[: len(job.shape) - rgb_axes]
    return tuple(int(i) for i in np.unravel_index(int(slice_index), leading)) if leading else ()


def run_slice(job: SliceJob, slice_index: int, plane: np.ndarray):
    """Process one slice: ``segment`` -> its labels (int64, ids offset as in the stack), ``embed`` -> the cache's source."""
    model = worker_model(job.weights, job.device, job.threads)
    predictor = _worker_predictor(model)
    cache = _worker_cache(job.cache_dir)
    plane = np.asarray(plane)
    if job.task == "embed":
        _, source = cache.embedding(
            predictor,
            plane,
            contrast_limits=job.contrast_limits,
            image_id=job.image_id,
            slice_index=slice_index,
            n_slices=job.n_slices,
        )
        return source
    from .stack import iter_segment_stack

    stack = _OneSlice(job, slice_position(job, slice_index), plane)
    (result,) = iter_segment_stack(
        stack,
        predictor=predictor,
        rgb=job.rgb,
        cache=cache,
        contrast_limits=job.contrast_limits,
        sampler=job.sampler,
        image_id=job.image_id,
        slices=[int(slice_index)],
        **dict(job.params),
    )
    return result.labels
