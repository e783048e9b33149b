"""The jobs that write files, over the slice runners: ``segment`` (resumable) and ``embed``.

:func:`segment_to_file` is the whole ``segment`` command: finished slices
go to ``<OUTPUT>.partial`` as they arrive (:class:`~napari_mobilesam.io.resume.SliceStore`),
a re-run skips them, and once all are there the stack's ids are made by
:func:`~napari_mobilesam.segment.linking.link_and_renumber` -- the same
numbering and linking as :func:`~napari_mobilesam.segment_stack` -- reading
one or two slices at a time, and the output is written atomically.
:func:`embed_all` is the ``embed`` command: every slice's embedding into the
cache.

Both run the slices with :func:`~napari_mobilesam.runners.slices.run_slices`
(in this process or on a dask cluster).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ..io.labels import check_output, write_labels
from ..io.resume import SliceStore
from ..segment.linking import DEFAULT_LINK_IOU, link_and_renumber, offset_labels, slice_offsets
from ..segment.params import LinkParams
from .slice_job import SliceJob
from .slices import run_slices

Progress = Callable[[int, int], None]


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

    started = time.perf_counter()
    output = check_output(output, overwrite=overwrite)
    link = LinkParams(link_3d=link_3d, link_iou=DEFAULT_LINK_IOU if link_iou is None else link_iou)
    plane_shape = tuple(image.labels_shape[-2:])
    from ..engine.weights import file_sha256

    fingerprint = {"input": image.fingerprint, "weights_sha256": file_sha256(job.weights), "job": job_fingerprint(job)}
    if job.decoder is not None:
        fingerprint["decoder_sha256"] = file_sha256(job.decoder)
    store = SliceStore.open(output, fingerprint, image.n_slices, plane_shape, resume=resume)
    try:
        resumed = _segment_slices(store, image, job, scheduler, workers, progress)
        counts = store.counts()
        offsets = slice_offsets(counts)
        planes, objects = link_and_renumber(
            lambda flat: offset_labels(store.read(flat), offsets[flat]),
            int(counts.sum()),
            image.leading_shape,
            link_3d=link.link_3d,
            link_iou=link.link_iou,
        )
        attributes = {
            "napari_mobilesam": {
                "input": image.image_id,
                "sampler": job.sampler,
                "params": dict(job.params),
                "link_3d": link.link_3d,
                "weights_sha256": fingerprint.get("weights_sha256"),
                "model": job.model,
            }
        }
        write_labels(output, planes, image.labels_shape, overwrite=overwrite, attributes=attributes)
    except BaseException:
        # Finished slices are kept for a re-run to resume; a store without any has nothing to offer.
        if store.done():
            store.release()
        else:
            store.remove()
        raise
    store.remove()
    return {
        "output": str(output),
        "slices": image.n_slices,
        "resumed": len(resumed),
        "objects": objects,
        "seconds": time.perf_counter() - started,
    }


def _segment_slices(store: SliceStore, image, job: SliceJob, scheduler, workers, progress) -> set[int]:
    """Segment the slices ``store`` lacks into it; returns those it had already (resumed)."""
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
    return done


def job_fingerprint(job: SliceJob) -> dict:
    """What, besides the input and the weights' checksum, decides a slice's labels."""
    from .. import __version__

    return {
        "version": __version__,
        "task": job.task,
        "rgb": job.rgb,
        "contrast_limits": job.contrast_limits,
        "sampler": job.sampler,
        "params": sorted(job.params),
        **({"model": job.model} if job.model is not None else {}),
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
