"""Slices on a dask.distributed cluster: a running scheduler, or a local cluster started for the run.

Each worker process loads the model once (its
:func:`~napari_mobilesam.engine.session.process_session`) and keeps it for every
later slice. The client reads the slices and sends them, and receives the
results: workers need the weights file (at the same path) and, for a disk
cache, the cache folder, but not the input or output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import MobileSAMError
from .slice_job import SliceJob, read_slice, run_batch


def require_distributed() -> None:
    """Raise unless dask.distributed can be imported (checked before a run creates anything)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MobileSAMError(
            "Running on a dask cluster (--scheduler, --workers) needs dask.distributed: "
            "pip install 'napari-mobilesam[distributed]', or leave out those options to run here."
        ) from None


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
    in flight at once, so the client's memory stays bounded. A task takes
    ``job.batch_size`` slices (``None``: 1), encoded together on its worker.
    """
    require_distributed()
    import logging

    from distributed import Client, LocalCluster, as_completed

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
    size = max(1, job.batch_size or 1)
    pending = iter([todo[start : start + size] for start in range(0, len(todo), size)])
    running = as_completed()
    in_flight = {}

    def submit_next() -> bool:
        group = next(pending, None)
        if group is None:
            return False
        planes = client.scatter([read_slice(stack, job, slice_index) for slice_index in group], hash=False)
        future = client.submit(run_batch, job, group, planes, pure=False)
        in_flight[future] = group
        running.add(future)
        return True

    for _ in range(slots):
        if not submit_next():
            break
    try:
        for future in running:
            group = in_flight.pop(future)
            slice_index = group[0]
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
            for index, one in zip(group, result, strict=True):
                on_result(index, one)
            submit_next()
    finally:
        for future in in_flight:
            future.cancel()
