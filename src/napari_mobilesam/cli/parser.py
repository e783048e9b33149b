"""The options of the ``napari-mobilesam`` command line: one ``argparse`` parser for all subcommands.

The option groups shared by several subcommands (model and machine, input,
output, dask.distributed) are built once as parent parsers; ``segment`` adds
the settings of :class:`~napari_mobilesam.segment.params.EverythingParams` and
:class:`~napari_mobilesam.segment.params.LinkParams`, made by :func:`add_settings`
from the dataclasses' own fields (type, range, help, default), so the
command line takes exactly what the Python API takes. Values are checked by
building the dataclass (:func:`settings_from_args`): a value out of range is
the API's one-line error.
"""

from __future__ import annotations

import argparse
import dataclasses

from .. import __version__

PROG = "napari-mobilesam"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, its subcommand in ``args.command``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="MobileSAM segmentation of microscopy images and stacks, from the command line.",
        epilog="Run 'napari-mobilesam COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from ..engine.model_registry import MODELS

    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("model and machine")
    group.add_argument(
        "--model",
        choices=list(MODELS),
        metavar="NAME",
        help=f"the model: {', '.join(MODELS)} (default: NAPARI_MOBILESAM_MODEL or mobile_sam; "
        "'napari-mobilesam info' lists them)",
    )
    group.add_argument(
        "--weights",
        metavar="FILE",
        help="SAM weights file instead of the model's own (default: NAPARI_MOBILESAM_WEIGHTS for mobile_sam, "
        "or the model's cached file, downloaded once); a micro-sam checkpoint brings its decoder",
    )
    group.add_argument("--decoder", metavar="FILE", help="instance decoder file instead of the model's own")
    group.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N or mps (default: the best available)")
    from ..engine.precision import EncoderSettings

    add_settings(group, EncoderSettings)  # --precision
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
    from ..segment.instance_params import APGParams, WatershedParams
    from ..segment.params import EverythingParams, LinkParams

    group = segment.add_argument_group("segmentation")
    add_settings(group, EverythingParams)
    # Off unless asked: ids linked across z are a choice about the data (z-stack or not), not a default.
    add_settings(group, LinkParams, defaults={"link_3d": False})
    group.add_argument("--no-resume", action="store_true", help="discard slices left by an interrupted run")
    # Left unset, the AIS/APG settings are the model's (micro-sam's annotator's; see settings_for_model).
    ais = segment.add_argument_group("--sampler ais (and apg where the name is the same)")
    add_settings(ais, WatershedParams, per_model=True, also=APGParams)
    apg = segment.add_argument_group("--sampler apg")
    add_settings(apg, APGParams, per_model=True, skip=[item.name for item in dataclasses.fields(WatershedParams)])

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


def add_settings(group, cls, defaults: dict | None = None, *, per_model: bool = False, skip=(), also=None) -> None:
    """One option per field of the settings dataclass ``cls``: ``--points-per-side N``, ``--link-3d/--no-link-3d``.

    Type, choices, help and default come from the field (``defaults`` overrides a default
    for the command line); the help says the range and the default. ``per_model``: the
    options default to None (unset: the model's value, resolved by the command); ``skip``:
    fields left out (already made from another class); ``also``: a settings class sharing
    some names, whose other defaults the help names too.
    """
    from ..segment.param_fields import describe_range, setting_types

    defaults = defaults or {}
    for item in dataclasses.fields(cls):
        if item.name in skip:
            continue
        kind, _optional = setting_types(cls)[item.name]
        default = None if per_model else defaults.get(item.name, item.default)
        span = "" if "choices" in item.metadata else describe_range(kind, item.metadata)  # argparse lists choices
        shown = ("on" if default else "off") if kind is bool else default
        if per_model:
            shown = f"the model's, else {item.default}"
            other = {field.name: field.default for field in dataclasses.fields(also)} if also else {}
            if other.get(item.name, item.default) != item.default:
                shown += f"; {also.__name__.removesuffix('Params').lower()}: {other[item.name]}"
        text = f"{item.metadata['help']} ({span + '; ' if span else ''}default: {shown})".replace("%", "%%")
        option = "--" + item.name.replace("_", "-")
        if kind is bool:
            group.add_argument(option, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif "choices" in item.metadata:
            group.add_argument(option, choices=item.metadata["choices"], default=default, help=text)
        else:
            group.add_argument(option, type=kind, default=default, metavar=kind.__name__.upper(), help=text)


def settings_from_args(cls, args):
    """``cls`` built from the options :func:`add_settings` made: a bad value is the API's error, naming the option."""
    from ..errors import MobileSAMError

    names = [item.name for item in dataclasses.fields(cls)]
    try:
        return cls(**{name: getattr(args, name) for name in names})
    except MobileSAMError as error:
        raise MobileSAMError(as_option(str(error), names)) from None


def as_option(message: str, names) -> str:
    """The API's error about a setting (``"min_size must ..."``), told about its option (``"--min-size must ..."``)."""
    for name in names:
        if message.startswith(f"{name} must"):
            return "--" + name.replace("_", "-") + message[len(name) :]
    return message


def _positive_int(text: str) -> int:
    """An argparse ``type`` for counts (``--threads``, ``--workers``): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value
