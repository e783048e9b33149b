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

This module is the entry point (``main``): it parses, checks what argparse
cannot, runs the command and maps its errors to the exit status. The options
are built in :mod:`.parser`, the commands live in :mod:`.commands` (segment,
prompt, embed) and :mod:`.info`, the progress bar in :mod:`.progress`.
"""

from __future__ import annotations

import sys

from ..errors import MobileSAMError
from .commands import cmd_embed, cmd_prompt, cmd_segment
from .info import cmd_info
from .parser import PROG, build_parser


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
        kept = partial is not None and partial.exists()  # a run stopped before its first slice leaves nothing
        note = f" Finished slices are kept in {partial}: run the same command again to resume." if kept else ""
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


if __name__ == "__main__":
    sys.exit(main())
