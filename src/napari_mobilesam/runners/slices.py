"""Run the slices of a stack: in this process, or on a dask cluster when asked.

Both runners hand each slice to the very same function,
:func:`~napari_mobilesam.runners.slice_job.run_slice`, so a cluster run gives
exactly the labels of a run in this process. ``on_result(slice_index, result)``
runs in this process as each slice finishes, in any order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .slice_job import SliceJob, job_session, read_slice, run_batch


def run_local(job: SliceJob, stack, todo: Iterable[int], on_result: Callable[[int, object], None]) -> None:
    """Process slices ``todo`` of ``stack`` in this process, in batches of ``job.batch_size`` (default: the device's)."""
    todo = list(todo)
    size = job.batch_size
    if size is None and todo:
        from ..engine.batching import encode_batch_size

        predictor = job_session(job).thread_predictor()
        size = encode_batch_size(predictor.device, predictor.precision)
    for start in range(0, len(todo), max(1, size or 1)):
        group = todo[start : start + max(1, size or 1)]
        results = run_batch(job, group, [read_slice(stack, job, slice_index) for slice_index in group])
        for slice_index, result in zip(group, results, strict=True):
            on_result(slice_index, result)


def run_slices(job: SliceJob, stack, todo, on_result, *, scheduler: str | None = None, workers: int | None = None):
    """On a dask cluster when a scheduler or a worker count is given (:mod:`.dask_cluster`), else here."""
    if scheduler or workers:
        from .dask_cluster import run_dask

        run_dask(job, stack, todo, on_result, scheduler=scheduler, workers=workers)
    else:
        run_local(job, stack, todo, on_result)
