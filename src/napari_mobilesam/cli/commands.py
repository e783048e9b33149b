"""The ``segment``, ``prompt`` and ``embed`` commands: read INPUT, run the model, write labels or embeddings.

Each ``cmd_*`` takes the parsed arguments and raises :class:`MobileSAMError`
on a user error; ``cli.main`` turns that into the exit status. Every setting
is checked (and the weights fetched) before any slice is processed or a
cluster is started.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ..errors import MobileSAMError
from .parser import PROG, settings_from_args
from .progress import ProgressBar

SAMPLE_ID = "napari-mobilesam:sample:nuclei_3d"


def cmd_segment(args) -> None:
    from ..io.labels import check_output
    from ..io.resume import SliceStore
    from ..runners.file_jobs import segment_to_file
    from ..segment.params import LinkParams

    image = _open_input(args)
    output = check_output(args.output, overwrite=args.overwrite, input_path=args.input)
    link = settings_from_args(LinkParams, args)
    job = _job(args, "segment", image)
    args._partial = SliceStore.path_for(output)
    with ProgressBar("segment", quiet=args.quiet) as bar:
        summary = segment_to_file(
            image,
            output,
            job,
            link_3d=link.link_3d,
            link_iou=link.link_iou,
            overwrite=args.overwrite,
            resume=not args.no_resume,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=bar.update,
        )
    resumed = f", {summary['resumed']} from an earlier run" if summary["resumed"] else ""
    _say(
        args,
        f"Wrote {summary['output']}: {summary['objects']} objects in {summary['slices']} slice(s)"
        f"{resumed}, {summary['seconds']:.1f} s.",
    )


def cmd_embed(args) -> None:
    from ..runners.file_jobs import embed_all

    image = _open_input(args)
    if args.no_cache:
        raise MobileSAMError("embed stores embeddings in the disk cache: leave out --no-cache.")
    job = _job(args, "embed", image)
    with ProgressBar("embed", quiet=args.quiet) as bar:
        summary = embed_all(image, job, scheduler=args.scheduler, workers=args.workers, progress=bar.update)
    _say(
        args,
        f"{summary['slices']} slice(s): {summary['computed']} encoded, {summary['disk']} already cached, "
        f"in {job.cache_dir}; {summary['seconds']:.1f} s.",
    )


def cmd_prompt(args) -> None:
    from ..engine.session import process_session
    from ..io.labels import check_output, write_labels
    from ..io.prompt_tables import read_boxes_csv, read_points_csv
    from ..segment.prompt_groups import group_prompts
    from ..segment.stack_prompts import segment_from_prompts

    image = _open_input(args)
    output = check_output(args.output, overwrite=args.overwrite, input_path=args.input)
    shape = image.labels_shape
    points, polarity = read_points_csv(args.points, len(shape)) if args.points else (None, None)
    boxes = read_boxes_csv(args.boxes, len(shape)) if args.boxes else None
    # An empty table (a header, no rows) is a warning, not an error: a batch of stacks may have one without objects.
    if points is not None and len(points) == 0:
        warn(f"{args.points} holds no points (only its header row).")
        points = polarity = None
    if boxes is not None and len(boxes) == 0:
        warn(f"{args.boxes} holds no boxes (only its header row).")
        boxes = None
    started = time.perf_counter()
    if points is None and boxes is None:
        warn(f"Nothing to segment: {output.name} gets no objects.")
        plane = np.zeros(shape[-2:], dtype=np.int32)
        write_labels(output, (plane for _ in range(image.n_slices)), shape, overwrite=args.overwrite)
        _say(args, f"Wrote {output}: 0 objects, {time.perf_counter() - started:.1f} s.")
        return
    group_prompts(shape, points, polarity, boxes)  # every prompt checked before the model loads
    weights, device = _checked_model(args)
    session = process_session(weights, device, _cache_dir(args), args.threads, args.precision)
    with ProgressBar("prompt", quiet=args.quiet) as bar:
        labels = segment_from_prompts(
            image.data,
            points_zyx=points,
            labels=polarity,
            boxes=boxes,
            predictor=session.thread_predictor(),
            cache=session.cache,
            rgb=image.rgb,
            contrast_limits=_limits(args),
            image_id=image.image_id,
            progress=bar.update,
        )
    labels = np.asarray(labels)
    write_labels(output, labels.reshape(-1, *labels.shape[-2:]), image.labels_shape, overwrite=args.overwrite)
    count = int(np.count_nonzero(np.unique(labels)))
    _say(args, f"Wrote {output}: {count} objects, {time.perf_counter() - started:.1f} s.")


# -- shared by the commands -----------------------------------------------------------


def _open_input(args):
    from ..io.images import InputImage, read_image

    if args.sample:
        from .._sample_data import synthetic_nuclei

        stack, _ = synthetic_nuclei()
        fingerprint = {"image_id": SAMPLE_ID, "shape": list(stack.shape), "dtype": str(stack.dtype)}
        return InputImage(stack, False, SAMPLE_ID, fingerprint)
    return read_image(args.input, array=args.array, rgb=args.rgb)


def _limits(args):
    return tuple(args.contrast_limits) if args.contrast_limits else None


def _cache_dir(args, required: bool = False) -> str | None:
    """The disk cache folder of the run (``None`` with ``--no-cache``, or, with a warning, when it cannot be one).

    ``required`` (``embed``, which exists to fill it): an unusable folder is an error instead.
    """
    if args.no_cache:
        return None
    from ..cache.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(memory_bytes=0, directory=args.cache or True)
    if cache.disk_problem:
        fix = "Point --cache (or NAPARI_MOBILESAM_CACHE) at a folder"
        if required:
            raise MobileSAMError(f"embed stores embeddings on disk, but {cache.disk_problem}. {fix}.")
        warn(f"the disk cache is off ({cache.disk_problem}): embeddings are kept in memory only. {fix}.")
        return None
    return str(cache.directory)


def _job(args, task: str, image):
    """The per-slice job, every setting checked here: before a download, a cluster start or any file is made."""
    from ..runners.slice_job import SliceJob

    cluster = bool(args.scheduler or args.workers)
    if cluster:
        from ..runners.dask_cluster import require_distributed

        require_distributed()
    sampler, params = "grid", ()
    if task == "segment":
        from ..segment.params import EverythingParams

        settings = settings_from_args(EverythingParams, args)  # a bad value fails here, not on every worker
        sampler, params = settings.sampler, tuple(settings.kwargs().items())
    cache_dir = _cache_dir(args, required=task == "embed")
    weights, device = _checked_model(args)
    threads = args.threads
    if threads is None and args.workers:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    if cluster:
        from ..engine.weights import check_weights

        check_weights(weights)  # the workers load the model; a file that is not MobileSAM's fails here
    else:
        from ..engine.session import process_session

        process_session(weights, device, cache_dir, threads, args.precision)  # loaded once: the slices reuse it
    return SliceJob(
        task=task,
        weights=weights,
        shape=tuple(int(s) for s in image.data.shape),
        dtype=str(image.data.dtype),
        rgb=image.rgb,
        image_id=image.image_id,
        device=device,
        threads=threads,
        cache_dir=cache_dir,
        contrast_limits=_limits(args),
        sampler=sampler,
        params=params,
        precision=args.precision,
    )


def _checked_model(args) -> tuple[str, str | None]:
    """``(weights file, device)`` of the run, checked with the contrast limits; the weights are downloaded if needed."""
    from ..engine.device import resolve_device
    from ..engine.preprocessing import check_contrast_limits
    from ..engine.weights import resolve_weights

    try:
        check_contrast_limits(_limits(args))
    except MobileSAMError:
        low, high = args.contrast_limits
        raise MobileSAMError(
            f"--contrast-limits must be LOW HIGH, two finite numbers with LOW <= HIGH, got {low:g} {high:g}."
        ) from None
    # Also NAPARI_MOBILESAM_DEVICE; on a cluster the workers resolve it again, on their own hardware.
    resolve_device(args.device, option="--device")
    if args.weights is None:
        _announce_download(args)
    return str(resolve_weights(args.weights)), args.device


def _announce_download(args) -> None:
    import logging

    from ..engine.weights import OFFICIAL_SIZE, weights_status

    status = weights_status()
    if status["source"] == "cache" and not status["cache_present"]:
        logging.getLogger("pooch").setLevel(logging.WARNING)  # our line instead of pooch's
        _say(
            args,
            f"Downloading the MobileSAM weights ({OFFICIAL_SIZE / 1e6:.0f} MB, once) from {status['url']} "
            f"to {status['cache_path']}",
        )


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def warn(message: str) -> None:
    """One warning line on stderr (also with --quiet: it is about the result, not the progress)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)
