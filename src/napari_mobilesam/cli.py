"""The ``napari-mobilesam`` command: segment, prompt, embed and info, without a viewer.

::

    napari-mobilesam segment INPUT -o labels.tif [--sampler grid|boxes] [--link-3d] [--points-per-side 32 ...]
    napari-mobilesam segment --sample -o labels.tif          # the built-in sample stack
    napari-mobilesam prompt INPUT --points points.csv [--boxes shapes.csv] -o labels.tif
    napari-mobilesam embed INPUT [--cache DIR]               # precompute every slice's embedding
    napari-mobilesam info                                    # version, device, weights, cache

INPUT is a TIFF or a zarr array (``--array NAME`` picks one inside a group);
OUTPUT a ``.tif``/``.tiff`` or ``.zarr``. ``segment`` and ``embed`` run on a
dask cluster with ``--scheduler ADDRESS`` or ``--workers N``. Exit status 0
on success, 1 on an error (one line on stderr), 2 on a usage error, 130 when
interrupted (finished slices are kept: run the same command again to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from . import __version__
from .errors import MobileSAMError

PROG = "napari-mobilesam"
SAMPLE_ID = "napari-mobilesam:sample:nuclei_3d"
EVERYTHING_PARAMS = {
    # option name: (type, help)
    "points_per_side": (int, "prompt grid: points along each side of the image"),
    "points_per_batch": (int, "prompts decoded together (memory vs speed)"),
    "pred_iou_thresh": (float, "keep masks whose predicted IoU is at least this (0..1)"),
    "stability_score_thresh": (float, "keep masks at least this stable under threshold changes (0..1)"),
    "stability_score_offset": (float, "threshold shift of the stability score (logits)"),
    "box_nms_thresh": (float, "IoU above which overlapping masks are duplicates (0..1)"),
    "min_mask_region_area": (int, "remove islands and fill holes smaller than this many pixels"),
    "boxes_per_batch": (int, "box prompts decoded together (--sampler boxes)"),
}


# -- arguments ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="MobileSAM segmentation of microscopy images and stacks, from the command line.",
        epilog="Run 'napari-mobilesam COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("model and machine")
    group.add_argument(
        "--weights",
        metavar="FILE",
        help="MobileSAM weights (default: NAPARI_MOBILESAM_WEIGHTS or the cached official file, downloaded once)",
    )
    group.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N or mps (default: the best available)")
    group.add_argument(
        "--cache",
        metavar="DIR",
        help="embedding cache folder (default: the user cache folder, see 'napari-mobilesam info')",
    )
    group.add_argument("--no-cache", action="store_true", help="do not read or write embeddings on disk")
    group.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="CPU threads for torch (per worker with --workers/--scheduler)",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    group.add_argument("--debug", action="store_true", help="show the traceback of errors")

    source = argparse.ArgumentParser(add_help=False)
    group = source.add_argument_group("input")
    group.add_argument("input", nargs="?", metavar="INPUT", help="a TIFF file or a zarr array (or group, with --array)")
    group.add_argument("--sample", action="store_true", help="use the built-in synthetic nuclei stack instead of INPUT")
    group.add_argument("--array", metavar="NAME", help="the array inside a zarr group, e.g. 'raw' or '0'")
    group.add_argument(
        "--rgb",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether a last axis of 3 or 4 is colour (default: guessed as napari does)",
    )
    group.add_argument(
        "--contrast-limits",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="intensity range mapped to 0..255 for every slice (default: per-slice percentiles)",
    )

    output = argparse.ArgumentParser(add_help=False)
    group = output.add_argument_group("output")
    group.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="labels file: .tif, .tiff or .zarr")
    group.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")

    cluster = argparse.ArgumentParser(add_help=False)
    group = cluster.add_argument_group("dask.distributed")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="run slices on this dask scheduler (tcp://host:8786)")
    where.add_argument(
        "--workers", type=_positive_int, metavar="N", help="start a local dask cluster of N worker processes"
    )

    segment = commands.add_parser(
        "segment",
        parents=[source, output, cluster, common],
        help="segment everything on a 2D image or every slice of a stack",
        description="Segment every object on a 2D image or on each 2D slice of a stack. Finished slices are kept in "
        "OUTPUT.partial, so an interrupted run resumes where it stopped.",
    )
    group = segment.add_argument_group("segmentation")
    group.add_argument(
        "--sampler",
        choices=("grid", "boxes"),
        default="grid",
        help="prompts: a regular grid of points, or boxes proposed from the image (default: grid)",
    )
    group.add_argument(
        "--link-3d",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="give an object that continues on the next z-slice one id (default: off)",
    )
    group.add_argument("--link-iou", type=float, metavar="F", help="least IoU between slices to link (default 0.5)")
    for name, (kind, text) in EVERYTHING_PARAMS.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, metavar=kind.__name__.upper(), help=text)
    group.add_argument("--no-resume", action="store_true", help="discard slices left by an interrupted run")

    prompt = commands.add_parser(
        "prompt",
        parents=[source, output, common],
        help="segment objects from points (and boxes) in napari's CSV format",
        description="Segment one object per prompt. POINTS: napari's Points CSV (index, axis-0, axis-1, ...; an "
        "optional 'label' or 'positive' column marks negative points) or a table with columns z, y, x. BOXES: "
        "napari's Shapes CSV (rectangles) or a table with columns z, y0, x0, y1, x1. Coordinates are pixels of "
        "INPUT in its axis order.",
    )
    prompt.add_argument("--points", metavar="CSV", help="points table")
    prompt.add_argument("--boxes", metavar="CSV", help="boxes table")

    commands.add_parser(
        "embed",
        parents=[source, cluster, common],
        help="precompute the embedding of every slice into the cache",
        description="Encode every 2D slice into the embedding cache, so that segmenting it later (here or in "
        "napari) skips the slow step.",
    )

    info = commands.add_parser("info", parents=[common], help="version, device, weights and cache")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


# -- entry point -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "input", None) is not None and args.sample:
        parser.error("give INPUT or --sample, not both")
    if args.command in ("segment", "prompt", "embed") and args.input is None and not args.sample:
        parser.error("INPUT is missing (or use --sample)")
    if args.command == "prompt" and not (args.points or args.boxes):
        parser.error("give --points CSV and/or --boxes CSV")
    command = {"segment": cmd_segment, "prompt": cmd_prompt, "embed": cmd_embed, "info": cmd_info}[args.command]
    try:
        command(args)
    except MobileSAMError as error:
        if args.debug:
            raise
        _fail(str(error))
        return 1
    except KeyboardInterrupt:
        partial = getattr(args, "_partial", None)
        note = f" Finished slices are kept in {partial}: run the same command again to resume." if partial else ""
        _fail(f"interrupted.{note}")
        return 130
    except Exception as error:
        if args.debug:
            raise
        _fail(
            f"unexpected {type(error).__name__}: {error}. Run again with --debug for the traceback, and please "
            "report it."
        )
        return 1
    return 0


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


# -- commands --------------------------------------------------------------------------


def cmd_segment(args) -> None:
    from .distributed import segment_to_file
    from .io import SliceStore, check_output

    image = _open_input(args)
    output = check_output(args.output, overwrite=args.overwrite, input_path=args.input)
    job = _job(args, "segment", image)
    args._partial = SliceStore.path_for(output)
    with ProgressBar("segment", quiet=args.quiet) as bar:
        summary = segment_to_file(
            image,
            output,
            job,
            link_3d=args.link_3d,
            link_iou=args.link_iou,
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
    from .distributed import embed_all

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
    from .distributed import resolve_weights, worker_model
    from .io import check_output, write_labels
    from .prompt_stack import segment_from_prompts
    from .prompt_tables import read_boxes_csv, read_points_csv

    image = _open_input(args)
    output = check_output(args.output, overwrite=args.overwrite, input_path=args.input)
    ndim = len(image.labels_shape)
    points, polarity = read_points_csv(args.points, ndim) if args.points else (None, None)
    boxes = read_boxes_csv(args.boxes, ndim) if args.boxes else None
    if args.device:
        from .device import resolve_device

        resolve_device(args.device)
    if args.weights is None:
        _announce_download(args)
    started = time.perf_counter()
    model = worker_model(str(resolve_weights(args.weights)), args.device, args.threads)
    with ProgressBar("prompt", quiet=args.quiet) as bar:
        labels = segment_from_prompts(
            image.data,
            points_zyx=points,
            labels=polarity,
            boxes=boxes,
            model=model,
            cache=_cache(args),
            rgb=image.rgb,
            contrast_limits=_limits(args),
            image_id=image.image_id,
            progress=bar.update,
        )
    labels = np.asarray(labels)
    write_labels(output, labels.reshape(-1, *labels.shape[-2:]), image.labels_shape, overwrite=args.overwrite)
    count = int(np.count_nonzero(np.unique(labels)))
    _say(args, f"Wrote {output}: {count} objects, {time.perf_counter() - started:.1f} s.")


def cmd_info(args) -> None:
    import torch

    from .cache import EmbeddingCache
    from .device import DEVICE_ENV, resolve_device
    from .weights import weights_status

    status = weights_status()
    if args.weights:
        path = os.path.abspath(os.path.expanduser(args.weights))
        status.update(path=path, present=os.path.isfile(path), source="--weights")
    try:
        device = str(resolve_device(args.device))
        device_note = "--device" if args.device else (DEVICE_ENV if os.environ.get(DEVICE_ENV) else "best available")
    except MobileSAMError as error:
        if args.device:
            raise
        device, device_note = "unavailable", str(error)
    cache = None if args.no_cache else EmbeddingCache(memory_bytes=0, directory=args.cache or True)
    try:
        import distributed

        dask_version = distributed.__version__
    except ImportError:
        dask_version = None
    report = {
        "version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_source": device_note,
        "threads": torch.get_num_threads(),
        "weights": status,
        "cache": None if cache is None else {"path": str(cache.directory), "bytes": cache.disk_bytes_used()},
        "distributed": dask_version,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    weights = status["path"]
    if status["present"]:
        state = "present"
        if status["source"] == "cache" and status.get("cache_verified") is False:
            state = "present, but not the official file (checksum differs): delete it to download again"
    else:
        state = f"missing: downloaded on first use from {status['url']}"
    lines = [
        f"napari-mobilesam {__version__} (Python {report['python']}, torch {report['torch']})",
        f"device:   {device} ({device_note}); torch threads: {report['threads']}",
        f"weights:  {weights} [{state}] (from {status['source']})",
    ]
    if cache is None:
        lines.append("cache:    disk cache off (--no-cache)")
    else:
        from .cache import _format_bytes

        lines.append(f"cache:    {cache.directory} ({_format_bytes(report['cache']['bytes'])})")
    lines.append(f"dask:     {'distributed ' + dask_version if dask_version else 'not installed (no --scheduler)'}")
    for name, value in status["overrides"].items():
        lines.append(f"env:      {name}={value}")
    print("\n".join(lines))


# -- helpers ---------------------------------------------------------------------------


def _open_input(args):
    from .io import InputImage, read_image

    if args.sample:
        from ._sample_data import synthetic_nuclei

        stack, _ = synthetic_nuclei()
        fingerprint = {"image_id": SAMPLE_ID, "shape": list(stack.shape), "dtype": str(stack.dtype)}
        return InputImage(stack, False, SAMPLE_ID, fingerprint)
    return read_image(args.input, array=args.array, rgb=args.rgb)


def _limits(args):
    return tuple(args.contrast_limits) if args.contrast_limits else None


def _cache(args):
    from .cache import EmbeddingCache

    directory = None if args.no_cache else (args.cache or True)
    return EmbeddingCache(memory_bytes=256 << 20, directory=directory)


def _job(args, task: str, image):
    """The per-slice job, every setting checked here (before a download or a cluster start)."""
    from .distributed import SliceJob, resolve_weights

    params = tuple((name, getattr(args, name)) for name in EVERYTHING_PARAMS if getattr(args, name, None) is not None)
    if task == "segment":
        from .everything import EverythingParams

        EverythingParams.from_kwargs(**dict(params))  # a bad value fails here, not on every worker
    if args.device:
        from .device import resolve_device

        resolve_device(args.device)  # on a cluster the workers resolve it again, on their own hardware
    if args.weights is None:
        _announce_download(args)
    weights = str(resolve_weights(args.weights))  # before any work: fails fast offline, downloads once
    threads = args.threads
    if threads is None and getattr(args, "workers", None):
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    cache_dir = None if args.no_cache else str(_cache(args).directory)
    return SliceJob(
        task=task,
        weights=weights,
        shape=tuple(int(s) for s in image.data.shape),
        dtype=str(image.data.dtype),
        rgb=image.rgb,
        image_id=image.image_id,
        device=args.device,
        threads=threads,
        cache_dir=cache_dir,
        contrast_limits=_limits(args),
        sampler=getattr(args, "sampler", "grid"),
        params=params,
    )


def _announce_download(args) -> None:
    import logging

    from .weights import OFFICIAL_SIZE, weights_status

    status = weights_status()
    if status["source"] == "cache" and not status["cache_present"]:
        logging.getLogger("pooch").setLevel(logging.WARNING)  # our line instead of pooch's
        _say(
            args,
            f"Downloading the MobileSAM weights ({OFFICIAL_SIZE / 1e6:.0f} MB, once) from {status['url']} "
            f"to {status['cache_path']}",
        )


class ProgressBar:
    """``segment [#######.......] 12/30 slices  1.4 slices/s  ETA 13 s`` on stderr, when it is a terminal."""

    def __init__(self, label: str, quiet: bool = False, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()
        self.first_done: int | None = None
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if self.first_done is None:
            self.first_done, self.started = done, time.perf_counter()  # resumed slices do not count for speed
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / total) if total else width
        elapsed = time.perf_counter() - self.started
        rate = (done - self.first_done) / elapsed if elapsed > 0 else 0.0
        speed = f"  {rate:.2f} slices/s" if rate else ""
        eta = f"  ETA {(total - done) / rate:.0f} s" if rate and done < total else ""
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} slices{speed}{eta}"
        self.stream.write("\r" + line.ljust(78))
        self.stream.flush()
        self.shown = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


if __name__ == "__main__":
    sys.exit(main())
