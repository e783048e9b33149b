"""Run the slices of a stack in this process or on a dask.distributed cluster, resumably.

The unit of work is one 2D slice (:func:`run_slice`): encode it (through the
embedding cache) and, for ``segment``, segment everything on it. Both runners
call the very same function, so a cluster run gives exactly the labels of a
run in this process:

- :func:`run_local`: slice after slice in this process;
- :func:`run_dask`: on the workers of a running scheduler (``scheduler=``) or
  of a local cluster started for the run (``workers=N``). Each worker process
  loads the model once (kept in this module, keyed by weights and device)
  and keeps it for every later slice. The client reads the slices and sends
  them, and receives the labels: workers need the weights file (at the same
  path) and, for a disk cache, the cache folder, but not the input or output.

:func:`segment_to_file` is the whole ``segment`` command: finished slices
go to ``<OUTPUT>.partial`` with a "done" marker as they arrive (see
:class:`~napari_mobilesam.io.SliceStore`), a re-run skips them, and once all
are there the post-pass gives ids exactly as
:func:`~napari_mobilesam.stack.segment_stack` does (slice ``k``'s ids offset
by ``k * id_stride``, linked across z, renumbered ``1..N`` in order), reading
one or two slices at a time, and the output is written atomically.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MobileSAMError

Progress = Callable[[int, int], None]


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


# -- one slice, in whichever process runs it ------------------------------------

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


def read_slice(stack, job: SliceJob, slice_index: int) -> np.ndarray:
    return np.asarray(stack[slice_position(job, slice_index)])


# -- runners ---------------------------------------------------------------------


def run_local(job: SliceJob, stack, todo: Iterable[int], on_result: Callable[[int, object], None]) -> None:
    """Process slices ``todo`` of ``stack`` one after the other in this process."""
    for slice_index in todo:
        on_result(slice_index, run_slice(job, slice_index, read_slice(stack, job, slice_index)))


def run_dask(
    job: SliceJob,
    stack,
    todo: Iterable[int],
    on_result: Callable[[int, object], None],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
) -> None:
    """Process slices ``todo`` on a dask cluster; ``on_result`` runs in this process as each finishes.

    ``scheduler``: address of a running scheduler (``tcp://host:8786``);
    otherwise a local cluster of ``workers`` processes (one task at a time
    each) is started on loopback and closed at the end. Only a few slices are
    in flight at once, so the client's memory stays bounded.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MobileSAMError(
            "Running on a dask cluster needs dask.distributed: pip install 'napari-mobilesam[distributed]'."
        ) from None
    import logging

    todo = list(todo)
    if not todo:
        return
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler)  # waits distributed.comm.timeouts.connect (dask config, 30 s)
            except (OSError, TimeoutError, ValueError) as error:
                raise MobileSAMError(
                    f"Cannot reach the dask scheduler at {scheduler} ({error}). Check the address "
                    "(e.g. tcp://host:8786) and that the scheduler is running."
                ) from None
        else:
            cluster = LocalCluster(
                n_workers=int(workers or 1),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            client = Client(cluster)
        try:
            _submit_all(client, as_completed, job, stack, todo, on_result)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _submit_all(client, as_completed, job, stack, todo, on_result) -> None:
    slots = max(2, 2 * sum(client.nthreads().values()))
    pending = iter(todo)
    running = as_completed()
    in_flight = {}

    def submit_next() -> bool:
        slice_index = next(pending, None)
        if slice_index is None:
            return False
        plane = client.scatter(read_slice(stack, job, slice_index), hash=False)
        future = client.submit(run_slice, job, slice_index, plane, pure=False)
        in_flight[future] = slice_index
        running.add(future)
        return True

    for _ in range(slots):
        if not submit_next():
            break
    try:
        for future in running:
            slice_index = in_flight.pop(future)
            try:
                result = future.result()  # raises the worker's error here
            except MobileSAMError:
                raise
            except Exception as error:
                if type(error).__name__ not in ("KilledWorker", "CommClosedError", "FutureCancelledError"):
                    raise
                raise MobileSAMError(
                    f"Slice {slice_index} could not be finished on the cluster ({type(error).__name__}: {error}); "
                    "a worker died or lost its connection (out of memory?). Finished slices are kept: run the "
                    "same command again to resume."
                ) from None
            on_result(slice_index, result)
            submit_next()
    finally:
        for future in in_flight:
            future.cancel()


def run_slices(job: SliceJob, stack, todo, on_result, *, scheduler: str | None = None, workers: int | None = None):
    """:func:`run_dask` when a scheduler or a worker count is given, else :func:`run_local`."""
    if scheduler or workers:
        run_dask(job, stack, todo, on_result, scheduler=scheduler, workers=workers)
    else:
        run_local(job, stack, todo, on_result)


# -- the segment and embed commands ------------------------------------------------


def segment_to_file(
    image,
    output: str | os.PathLike,
    job: SliceJob,
    *,
    link_3d: bool = True,
    link_iou: float | None = None,
    overwrite: bool = False,
    resume: bool = True,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """Segment every slice of ``image`` (:class:`~napari_mobilesam.io.InputImage`) into ``output`` (TIFF or zarr).

    Slices finished by an earlier, interrupted run with the same input,
    weights and parameters are not computed again. Returns a summary:
    ``slices``, ``resumed`` (slices taken from the earlier run), ``objects``,
    ``seconds``, ``output``.
    """
    from .io import SliceStore, check_output, write_labels
    from .stack import DEFAULT_LINK_IOU

    started = time.perf_counter()
    output = check_output(output, overwrite=overwrite)
    link_iou = DEFAULT_LINK_IOU if link_iou is None else float(link_iou)
    plane_shape = tuple(image.labels_shape[-2:])
    from .weights import file_sha256

    fingerprint = {"input": image.fingerprint, "weights_sha256": file_sha256(job.weights), "job": job_fingerprint(job)}
    store = SliceStore.open(output, fingerprint, image.n_slices, plane_shape, resume=resume)
    done = store.done()
    todo = [k for k in range(image.n_slices) if k not in done]
    total, finished = image.n_slices, len(done)
    if progress is not None:
        progress(finished, total)

    def on_result(slice_index: int, labels) -> None:
        nonlocal finished
        store.write(slice_index, labels)
        finished += 1
        if progress is not None:
            progress(finished, total)

    run_slices(job, image.data, todo, on_result, scheduler=scheduler, workers=workers)
    planes, objects = assemble_labels(store.read, image.leading_shape, link_3d, link_iou)
    attributes = {
        "napari_mobilesam": {
            "input": image.image_id,
            "sampler": job.sampler,
            "params": dict(job.params),
            "link_3d": bool(link_3d),
            "weights_sha256": fingerprint.get("weights_sha256"),
        }
    }
    write_labels(output, planes, image.labels_shape, overwrite=overwrite, attributes=attributes)
    store.remove()
    return {
        "output": str(output),
        "slices": total,
        "resumed": len(done),
        "objects": objects,
        "seconds": time.perf_counter() - started,
    }


def job_fingerprint(job: SliceJob) -> dict:
    """What, besides the input and the weights' checksum, decides a slice's labels."""
    from . import __version__

    return {
        "version": __version__,
        "task": job.task,
        "rgb": job.rgb,
        "contrast_limits": job.contrast_limits,
        "sampler": job.sampler,
        "params": sorted(job.params),
    }


def embed_all(image, job: SliceJob, *, scheduler=None, workers=None, progress: Progress | None = None) -> dict:
    """Put the embedding of every slice of ``image`` in the cache; returns counts by source and seconds."""
    started = time.perf_counter()
    counts = {"computed": 0, "disk": 0, "memory": 0}
    total = image.n_slices
    if progress is not None:
        progress(0, total)

    def on_result(slice_index: int, source: str) -> None:
        counts[source] = counts.get(source, 0) + 1
        if progress is not None:
            progress(sum(counts.values()), total)

    run_slices(job, image.data, range(total), on_result, scheduler=scheduler, workers=workers)
    return {**counts, "slices": total, "seconds": time.perf_counter() - started}


# -- post-pass: ids as segment_stack gives them -------------------------------------


def assemble_labels(read: Callable[[int], np.ndarray], leading_shape: tuple[int, ...], link_3d: bool, link_iou: float):
    """The final planes from per-slice labels (already offset), and the number of objects.

    Same ids as :func:`~napari_mobilesam.stack.link_slices` followed by
    :func:`~napari_mobilesam.stack.relabel_in_order` on the whole stack, but
    holding one or two slices in memory at a time. Returns ``(planes, n)``
    where ``planes`` is an iterator over the ``int32`` planes in C order.
    """
    from .stack import match_masks

    n_slices = int(np.prod(leading_shape, dtype=np.int64))
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.get(i, i) != i:
            i = parent[i]
        return i

    if link_3d and leading_shape and leading_shape[-1] >= 2:
        depth = leading_shape[-1]
        following = read(0)
        for flat in range(n_slices - 1):
            current, following = following, read(flat + 1)
            if flat % depth == depth - 1:
                continue  # last z of one volume, first z of the next (e.g. the next time point)
            for a, b in match_masks(current, following, link_iou):
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    linked_old = np.array(sorted(parent), dtype=np.int64)
    linked_new = np.array([root(int(i)) for i in linked_old], dtype=np.int64)

    def linked(flat: int) -> np.ndarray:
        return _map_ids(np.asarray(read(flat), dtype=np.int64), linked_old, linked_new)

    ids = np.unique(np.concatenate([np.unique(linked(flat)) for flat in range(n_slices)]))
    ids = ids[ids > 0]
    if len(ids) >= np.iinfo(np.int32).max:
        raise MobileSAMError("More objects than an int32 label image can hold.")
    numbers = np.arange(1, len(ids) + 1, dtype=np.int64)

    def planes():
        for flat in range(n_slices):
            yield _map_ids(linked(flat), ids, numbers).astype(np.int32)

    return planes(), len(ids)


def _map_ids(labels: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Replace sorted ids ``old`` by ``new``; other ids unchanged."""
    if len(old) == 0:
        return labels
    position = np.clip(np.searchsorted(old, labels), 0, len(old) - 1)
    hit = old[position] == labels
    out = labels.copy()
    out[hit] = new[position[hit]]
    return out


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """The weights file a run uses (checked to exist): ``weights``, ``NAPARI_MOBILESAM_WEIGHTS``, or the download."""
    from .weights import WEIGHTS_ENV, download_weights

    if weights is None and os.environ.get(WEIGHTS_ENV, "").strip():
        weights = os.environ[WEIGHTS_ENV].strip()
        source = f"{WEIGHTS_ENV}={weights}"
    else:
        source = f"--weights {weights}"
    if weights is None:
        return download_weights()
    path = Path(weights).expanduser().absolute()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise MobileSAMError(f"{source}: {path} {what}. Give the path of the MobileSAM weights file (mobile_sam.pt).")
    return path
