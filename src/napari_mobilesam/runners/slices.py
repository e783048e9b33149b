"""Run the slices of a stack: in this process, or on a dask cluster when asked.

Both runners hand each slice to the very same function,
:func:`~napari_mobilesam.runners.slice_job.run_slice`, so a cluster run gives
exactly the labels of a run in this process. ``on_result(slice_index, result)``
runs in this process as each slice finishes, in any order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .slice_job import SliceJob, read_slice, run_slice


def run_local(job: SliceJob, stack, todo: Iterable[int], on_result: Callable[[int, object], None]) -> None:
    """Process slices ``todo`` of ``stack`` one after the other in this process."""
    for slice_index in todo:
        on_result(slice_index, run_slice(job, slice_index, read_slice(stack, job, slice_index)))


def run_slices(job: SliceJob, stack, todo, on_result, *, scheduler: str | None = None, workers: int | None = None):
    """On a dask cluster when a scheduler or a worker count is given (:mod:`.dask_cluster`), else here."""
    if scheduler or workers:
        from .dask_cluster import run_dask

        run_dask(job, stack, todo, on_result, scheduler=scheduler, workers=workers)
    else:
        run_local(job, stack, todo, on_result)
