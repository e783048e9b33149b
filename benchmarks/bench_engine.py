"""Encoder and one-click speed: ours vs the official MobileSAM, same weights, image, threads.

Usage (from the repo root, in the project's venv)::

    python benchmarks/bench_engine.py --official-python /path/to/official-venv/bin/python
    python benchmarks/bench_engine.py --ours-python /work/venv-t214/bin/python \
        --official-python /work/venv-t214/bin/python --precision bfloat16 --stack-slices 30

``--ours-python`` runs ours under another venv (another torch); ``--precision``
is our encoder's (the official code runs float32); ``--stack-slices N`` adds
a stack of N 512 x 512 slices embedded (official: one ``set_image`` at a time;
ours: ``Predictor.embed_many``); ``--json FILE`` writes the medians.

The official venv holds ``torch==2.14.1 torchvision==0.29.1 mobilesam-mirror timm``
(see docs/benchmarks.md). Both implementations stay loaded in their own
processes (``engine_worker.py``) and take turns, a few calls each, the order
swapped every round: the machine's slow spells (seconds to a minute) then
hit both alike. The report gives each side's median, the ratio of the
medians and the median of the rounds' ratios (each round's official median
over ours, taken next to each other), and checks that the two embeddings
agree within the parity tolerance (1e-3).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, WorkerProcess, recipe_weights_file, reference_python

WORKER = ROOT / "benchmarks" / "engine_worker.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-python", default=None, help="the official code's venv (default: common.py's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40, help="click rounds (encoder rounds: a quarter)")
    parser.add_argument("--per-round", type=int, default=5, help="clicks per implementation and round")
    parser.add_argument("--ours-python", default=sys.executable, help="the venv (torch) ours runs in")
    parser.add_argument("--precision", default="float32", help="our encoder's: float32, bfloat16, float16, auto")
    parser.add_argument("--stack-slices", type=int, default=0, help="also embed a stack of N 512x512 slices")
    parser.add_argument("--stack-rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the medians and ratios here")
    args = parser.parse_args()
    args.official_python = reference_python("official", args.official_python)

    jobs = (("encoder", max(3, args.rounds // 4), 1), ("click", args.rounds, args.per_round))
    if args.stack_slices:
        jobs += (("stack", args.stack_rounds, 1),)
    times = {impl: {name: [] for name, _, _ in jobs} for impl in ("official", "ours")}
    ratios = {name: [] for name, _, _ in jobs}
    with tempfile.TemporaryDirectory() as tmp:
        weights = recipe_weights_file(tmp)
        workers = {}
        try:
            for impl, python in (("official", args.official_python), ("ours", args.ours_python)):
                extra = ["--stack-slices", str(args.stack_slices or 1)]
                extra += ["--precision", args.precision] if impl == "ours" else []
                cmd = [python, str(WORKER), "--impl", impl, "--weights", str(weights), "--threads", str(args.threads)]
                workers[impl] = WorkerProcess([*cmd, "--embedding-out", str(Path(tmp) / f"{impl}.npy"), *extra])
            for name, rounds, repeats in jobs:
                for round_index in range(rounds):
                    order = ("official", "ours") if round_index % 2 == 0 else ("ours", "official")
                    medians = {}
                    for impl in order:
                        result = workers[impl].time(name, repeats)
                        times[impl][name] += result
                        medians[impl] = statistics.median(result)
                    ratios[name].append(medians["official"] / medians["ours"])
                    print(
                        f"{name} round {round_index + 1:2d}: official {medians['official'] * 1e3:7.1f} ms"
                        f"  ours {medians['ours'] * 1e3:7.1f} ms  {ratios[name][-1]:5.2f}x",
                        flush=True,
                    )
        finally:
            for worker in workers.values():
                worker.close()
        diff = float(np.abs(np.load(Path(tmp) / "ours.npy") - np.load(Path(tmp) / "official.npy")).max())

    versions = {impl: worker.info["torch"] for impl, worker in workers.items()}
    precision = workers["ours"].info.get("precision", "float32")
    print(f"\nthreads={args.threads}, torch ours {versions['ours']}, official {versions['official']}")
    print(f"ours in {precision}; embedding max |ours - official| = {diff:.2e} (float32 tolerance 1e-3)")
    labels = {
        "encoder": "encoder, 1024x1024 input",
        "click": "one click, 3 masks at 512x512",
        "stack": f"stack, {args.stack_slices} x 512x512",
    }
    summary = {"threads": args.threads, "torch": versions, "precision": precision, "max_diff": diff, "results": {}}
    for name, _, _ in jobs:
        ours = statistics.median(times["ours"][name])
        official = statistics.median(times["official"][name])
        summary["results"][name] = {"official_s": official, "ours_s": ours, "ratio": official / ours}
        summary["results"][name]["rounds_ratio"] = statistics.median(ratios[name])
        print(
            f"{labels[name]:32s} official {official * 1e3:8.1f} ms   ours {ours * 1e3:8.1f} ms   "
            f"speed-up {official / ours:5.2f}x (median of {len(ratios[name])} rounds' ratios "
            f"{statistics.median(ratios[name]):5.2f}x)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
