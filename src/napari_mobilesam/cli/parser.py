"""The options of the ``napari-mobilesam`` command line: one ``argparse`` parser for all subcommands.

The option groups shared by several subcommands (model and machine, input,
output, dask.distributed) are built once as parent parsers; ``segment`` adds
the automatic-mask settings of :data:`EVERYTHING_PARAMS`.
"""

from __future__ import annotations

import argparse

from .. import __version__

PROG = "napari-mobilesam"
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


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, its subcommand in ``args.command``."""
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
    """An argparse ``type`` for counts (``--threads``, ``--workers``): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value
