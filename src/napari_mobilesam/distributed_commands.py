"""The ``segment`` and ``embed`` commands over the slice runners: resumable output, ids as in one process.

:func:`segment_to_file` is the whole ``segment`` command: finished slices
go to ``<OUTPUT>.partial`` with a "done" marker as they arrive (see
:class:`~napari_mobilesam.io.SliceStore`), a re-run skips them, and once all
are there the post-pass (:func:`assemble_labels`) gives ids exactly as
:func:`~napari_mobilesam.stack.segment_stack` does (slice ``k``'s ids offset
by ``k * id_stride``, linked across z, renumbered ``1..N`` in order), reading
one or two slices at a time, and the output is written atomically.
:func:`embed_all` is the ``embed`` command: every slice's embedding into the
cache.

Both run the slices with :func:`napari_mobilesam.distributed.run_slices`
(in this process or on a dask cluster), imported when called: that module
re-exports this one's names.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .distributed_worker import SliceJob
from .errors import MobileSAMError

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
    from .distributed import run_slices
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
    from .distributed import run_slices

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
