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
from typing import NamedTuple

import numpy as np

from ..errors import MobileSAMError
from .parser import PROG, as_option, settings_from_args
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
    model = _checked_model(args)
    session = process_session(
        model.weights, model.device, _cache_dir(args), args.threads, model_name=model.name, decoder=model.decoder,
        precision=args.precision,
    )
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
        sampler, params = _sampler_settings(args)  # a bad value fails here, not on every worker
    cache_dir = _cache_dir(args, required=task == "embed")
    model = _checked_model(args, sampler)
    threads = args.threads
    if threads is None and args.workers:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    if cluster:
        from ..engine.weights import check_decoder, check_weights

        # The workers load the model; files that are not a model's fail here.
        has_decoder = check_weights(model.weights) or model.decoder is not None
        if model.decoder is not None:
            check_decoder(model.decoder)
    else:
        from ..engine.session import process_session

        # The model, loaded once: the slices reuse it.
        session = process_session(
            model.weights, model.device, cache_dir, threads, model_name=model.name, decoder=model.decoder,
            precision=args.precision,
        )
        has_decoder = getattr(session.model(), "instance_decoder", None) is not None
    if sampler in ("ais", "apg") and not has_decoder:
        from ..engine.model_registry import no_decoder_error

        raise no_decoder_error(sampler, model.name)
    return SliceJob(
        task=task,
        weights=model.weights,
        shape=tuple(int(s) for s in image.data.shape),
        dtype=str(image.data.dtype),
        rgb=image.rgb,
        image_id=image.image_id,
        device=model.device,
        threads=threads,
        cache_dir=cache_dir,
        contrast_limits=_limits(args),
        sampler=sampler,
        params=params,
        model=model.name,
        decoder=model.decoder,
        precision=args.precision,
    )


def _sampler_settings(args) -> tuple[str, tuple]:
    """``(sampler, its settings as (name, value) pairs)`` from the options: SAM's, or AIS/APG's on the model's defaults."""
    from dataclasses import asdict, fields

    from ..engine.model_registry import default_model_name
    from ..segment.params import INSTANCE_SETTINGS, EverythingParams, settings_for_model

    settings = settings_from_args(EverythingParams, args)
    given = {
        item.name: getattr(args, item.name)
        for cls in INSTANCE_SETTINGS.values()
        for item in fields(cls)
        if getattr(args, item.name, None) is not None
    }
    cls = INSTANCE_SETTINGS.get(settings.sampler)
    foreign = sorted(name for name in given if cls is None or name not in {item.name for item in fields(cls)})
    if foreign:
        options = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise MobileSAMError(
            f"{options}: not a setting of --sampler {settings.sampler}; leave it out, or choose the sampler it "
            "belongs to (--sampler ais or apg)."
        )
    if cls is None:
        return settings.sampler, tuple(settings.kwargs().items())
    model_name = args.model or default_model_name()
    try:
        instance = settings_for_model(settings.sampler, model_name, **given)
    except MobileSAMError as error:
        raise MobileSAMError(as_option(str(error), given)) from None
    return settings.sampler, tuple(asdict(instance).items())


class _Model(NamedTuple):
    """The model of a run: its registered ``name``, ``weights`` and ``decoder`` files (local paths), ``device``."""

    name: str
    weights: str
    decoder: str | None
    device: str | None


def _checked_model(args, sampler: str = "grid") -> _Model:
    """The run's model files (downloaded if needed) and device, checked with the contrast limits."""
    from ..engine.device import resolve_device
    from ..engine.model_registry import model_spec, no_decoder_error
    from ..engine.preprocessing import check_contrast_limits
    from ..engine.weights import resolve_model_files

    try:
        check_contrast_limits(_limits(args))
    except MobileSAMError:
        low, high = args.contrast_limits
        raise MobileSAMError(
            f"--contrast-limits must be LOW HIGH, two finite numbers with LOW <= HIGH, got {low:g} {high:g}."
        ) from None
    # Also NAPARI_MOBILESAM_DEVICE; on a cluster the workers resolve it again, on their own hardware.
    resolve_device(args.device, option="--device")
    spec = model_spec(args.model)
    if sampler in ("ais", "apg") and spec.decoder is None and args.decoder is None and args.weights is None:
        raise no_decoder_error(sampler, spec.name)  # before a download
    _announce_downloads(args, spec)
    weights, decoder = resolve_model_files(spec.name, args.weights, args.decoder)
    return _Model(spec.name, weights, decoder, args.device)


def _announce_downloads(args, spec) -> None:
    import logging

    from ..engine.weights import file_label, file_status

    if args.weights is not None:
        return
    files = [("weights", spec.sam)] + ([("decoder", spec.decoder)] if spec.decoder and args.decoder is None else [])
    if spec.sam.path_env and os.environ.get(spec.sam.path_env, "").strip():
        files = files[1:]  # the weights come from that file
    for kind, file in files:
        status = file_status(file)
        if status["cache_present"]:
            continue
        logging.getLogger("pooch").setLevel(logging.WARNING)  # our line instead of pooch's
        size = f"{file.size / 1e6:.0f} MB, " if file.size else ""
        _say(args, f"Downloading {file_label(spec, kind)} ({size}once) from {status['url']} to {status['cache_path']}")


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def warn(message: str) -> None:
    """One warning line on stderr (also with --quiet: it is about the result, not the progress)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)
