"""Segment everything on a 512x512 image: ours (grid and boxes) vs the official generator.

Usage (from the repo root, in the project's venv)::

    python benchmarks/bench_everything.py --official-python /path/to/official-venv/bin/python

Same recipe weights, same image, same thread count, SAM's default parameters;
each run is a fresh process and includes encoding the image. Ours is timed on
its second call in the process, after one on the mirrored image, which is
reported too (a fresh process's first call pays one-time costs: imports,
first allocations). The official
run takes over a minute, so it runs once by default. Ours also runs with
every mask decoded (see everything_worker.py: with the recipe weights no mask
passes the default IoU threshold, which lets ours skip the mask head).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, recipe_weights_file, reference_python

WORKER = ROOT / "benchmarks" / "everything_worker.py"


def run(python: str, impl: str, sampler: str, weights: Path, threads: int, every_mask: bool = False) -> dict:
    cmd = [
        python,
        str(WORKER),
        "--impl",
        impl,
        "--sampler",
        sampler,
        "--weights",
        str(weights),
        "--threads",
        str(threads),
    ]
    cmd += ["--every-mask"] if every_mask else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--official-python",
        default=None,
        help="the official venv's python (default: OFFICIAL_PYTHON or ../venv-official)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--official-runs", type=int, default=1)
    parser.add_argument("--our-runs", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = recipe_weights_file(tmp)
        official = [
            run(reference_python("official", args.official_python), "official", "grid", weights, args.threads)
            for _ in range(args.official_runs)
        ]
        print(f"official grid: {[round(r['seconds'], 1) for r in official]} s", flush=True)
        ours = {}
        for sampler in ("grid", "boxes"):
            for every_mask in (False, True):
                name = f"{sampler}, {'every mask decoded (pred_iou_thresh=0)' if every_mask else 'defaults'}"
                ours[name] = [
                    run(sys.executable, "ours", sampler, weights, args.threads, every_mask)
                    for _ in range(args.our_runs)
                ]
                timed = [round(r["seconds"], 2) for r in ours[name]]
                first = [round(r["first_call_seconds"], 2) for r in ours[name]]
                print(f"ours {name}: {timed} s (first call in the process: {first} s)", flush=True)

    base = min(r["seconds"] for r in official)
    print(
        "\n| run | seconds (best) | speed-up vs official grid | first call in a fresh process | its speed-up |"
        f"\n| --- | ---: | ---: | ---: | ---: |\n| official grid | {base:.1f} | 1.0x | | |"
    )
    for sampler, results in ours.items():
        best = min(r["seconds"] for r in results)
        first = min(r["first_call_seconds"] for r in results)
        print(f"| ours {sampler} | {best:.2f} | {base / best:.1f}x | {first:.2f} | {base / first:.1f}x |")


if __name__ == "__main__":
    main()
