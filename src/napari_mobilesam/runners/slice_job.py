"""One slice of a stack, in whichever process runs it: the job description and the per-slice function.

The unit of work is one 2D slice (:func:`run_slice`): encode it (through the
embedding cache) and, for ``segment``, segment everything on it with
:func:`~napari_mobilesam.segment.stack.segment_slice`, the function an
in-memory :func:`~napari_mobilesam.segment_stack` runs too. The runners call
:func:`run_slice` in this process or on dask workers, so a cluster run gives
exactly the labels of a run in this process.

Each process keeps its model (loaded once per weights and device) and its
embedding cache in :func:`~napari_mobilesam.engine.session.process_session`,
and one predictor per thread.

dask pickles :func:`run_slice` and :class:`SliceJob` by reference
(``napari_mobilesam.runners.slice_job.run_slice``): a worker imports this
module, so it imports only numpy at the top; torch and the model come in
when the first slice runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SliceJob:
    """Everything a worker needs to process one slice of a stack (small and picklable).

    ``task`` is ``"segment"`` or ``"embed"``; ``shape``, ``dtype`` and ``rgb``
    describe the whole stack (the cache files a slice by its place in it);
    ``weights`` is a path every worker can read; ``cache_dir`` the disk cache
    folder (``None``: memory only); ``threads``: torch threads per worker
    process (``None``: torch's default); ``params``: the sampler's settings
    as ``(name, value)`` pairs; ``model``: the registered model's name (its
    normalisation and defaults); ``decoder``: its instance decoder file, a
    path every worker can read (``None``: none, or inside ``weights``); ``precision``: the encoder's
    (see :mod:`~napari_mobilesam.engine.precision`); ``batch_size``: slices
    per task, encoded together (``None``: in this process the device's
    choice, :func:`~napari_mobilesam.engine.batching.encode_batch_size`; on
    a cluster, whose workers' devices the client does not know, 1).
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
    model: str | None = None
    decoder: str | None = None
    precision: str = "float32"
    batch_size: int | None = None

    @property
    def leading_shape(self) -> tuple[int, ...]:
        """The axes that index slices (everything before Y, X[, colour])."""
        rgb_axes = 3 if self.rgb else 2
        return tuple(self.shape[: len(self.shape) - rgb_axes])

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.leading_shape, dtype=np.int64))


def slice_position(job: SliceJob, slice_index: int) -> tuple[int, ...]:
    """The index over the leading axes of flat slice ``slice_index`` (C order)."""
    leading = job.leading_shape
    return tuple(int(i) for i in np.unravel_index(int(slice_index), leading)) if leading else ()


def read_slice(stack, job: SliceJob, slice_index: int) -> np.ndarray:
    """Slice ``slice_index`` of ``stack`` (read in this process, the client)."""
    return np.asarray(stack[slice_position(job, slice_index)])


def job_session(job: SliceJob):
    """This process's session for ``job`` (model loaded once per weights, device and precision)."""
    from ..engine.session import process_session

    return process_session(
        job.weights,
        job.device,
        job.cache_dir,
        job.threads,
        model_name=job.model,
        decoder=job.decoder,
        precision=job.precision,
    )


def run_slice(job: SliceJob, slice_index: int, plane: np.ndarray):
    """Process one slice: ``segment`` -> its labels (int32, objects ``1..n``), ``embed`` -> the cache's source."""
    return run_batch(job, [slice_index], [plane])[0]


def run_batch(job: SliceJob, slice_indices, planes) -> list:
    """Process several slices, their embeddings encoded together: :func:`run_slice`'s result for each, in order."""
    session = job_session(job)
    predictor = session.thread_predictor()
    planes = [np.asarray(plane) for plane in planes]
    indices = [int(i) for i in slice_indices]
    found = session.cache.embeddings(
        predictor,
        planes,
        contrast_limits=job.contrast_limits,
        image_id=job.image_id,
        slice_indices=indices,
        n_slices=job.n_slices,
    )
    if job.task == "embed":
        return [source for _, source in found]
    from ..segment.stack import segment_slice

    return [
        segment_slice(
            plane,
            predictor=predictor,
            cache=session.cache,
            contrast_limits=job.contrast_limits,
            sampler=job.sampler,
            image_id=job.image_id,
            slice_index=index,
            n_slices=job.n_slices,
            embedding=embedding,
            **dict(job.params),
        )[0]
        for index, plane, embedding in zip(indices, planes, found, strict=True)
    ]
