"""Instance segmentation speed: ours vs micro-sam 1.8.14, same weights, images and threads.

Usage (from the repo root, in the project's venv)::

    python benchmarks/bench_instance.py --microsam-python /work/venv-microsam/bin/python

micro-sam's venv (never a dependency of this project)::

    python3 -m venv /work/venv-microsam
    /work/venv-microsam/bin/pip install torch==2.14.1 torchvision==0.29.1 micro-sam==1.8.14 mobilesam-mirror timm

(``micro-sam`` brings torch_em, python-elf and the rest; its ``vit_t`` needs the
``mobile_sam`` package, which it does not declare: ``mobilesam-mirror`` and
``timm`` provide it.)

Both sides load the recipe weights (SAM and instance decoder, seed 0; see
tests/data/REFERENCE.md), each in its own process (``instance_worker.py``),
and take turns call by call, the order swapped every round, so that the
machine's slow spells hit both alike. Three jobs:

- **maps**: the three decoder maps from a cached embedding (nuclei 512x512,
  histo 300x500), ``--rounds`` rounds of one call each;
- **AIS stack**: the whole pipeline (encoder, maps, watershed) on each slice
  of a 512x512 stack (``--slices``), the two sides alternating slice by slice;
- **APG**: micro-sam's automatic prompt generation with its defaults on the
  nuclei image, from its embedding and maps (``--rounds`` rounds).

Prints a markdown table (medians, the ratio of the medians and the median of
the rounds' ratios) with the load average before and after, checks that the
two sides' maps agree within the parity tolerance (1e-3), and writes the
table and the raw times to ``benchmarks/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, WorkerProcess, recipe_weights_file, reference_python, tests_on_path

WORKER = ROOT / "benchmarks" / "instance_worker.py"
SIDES = ("microsam", "ours")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def interleaved(workers: dict, commands: list[str], label: str) -> dict:
    """Each command to both sides, the order swapped each time; per side the times and objects."""
    times = {side: [] for side in SIDES}
    objects = {side: [] for side in SIDES}
    ratios = []
    for index, command in enumerate(commands):
        order = SIDES if index % 2 == 0 else SIDES[::-1]
        seconds = {}
        for side in order:
            result = workers[side].ask(command)
            times[side] += result["times"]
            objects[side] += result["objects"]
            seconds[side] = statistics.median(result["times"])
        ratios.append(seconds["microsam"] / seconds["ours"])
        print(
            f"{label} {index + 1:2d}/{len(commands)}: micro-sam {seconds['microsam']:7.2f} s"
            f"  ours {seconds['ours']:6.2f} s  {ratios[-1]:5.2f}x",
            flush=True,
        )
    return {"times": times, "objects": objects, "ratios": ratios}


def row(name: str, result: dict, total: bool = False) -> str:
    pick = sum if total else statistics.median
    microsam, ours = (pick(result["times"][side]) for side in SIDES)
    kind = "total" if total else "median"
    counts = [sorted({n for n in result["objects"][side] if n is not None}) for side in SIDES]
    objects = " / ".join(", ".join(map(str, c)) for c in counts) if any(counts) else "-"
    return (
        f"| {name} | {kind} {microsam:.2f} s | {kind} {ours:.2f} s | {microsam / ours:.2f}x "
        f"| {statistics.median(result['ratios']):.2f}x | {len(result['ratios'])} | {objects} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--microsam-python", default=None, help="micro-sam's venv (default: common.py's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the maps and APG jobs")
    parser.add_argument("--slices", type=int, default=30, help="slices of the AIS stack (at most 30)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["maps", "stack", "apg"])
    args = parser.parse_args()
    args.microsam_python = reference_python("microsam", args.microsam_python)
    tests_on_path()

    import torch

    from recipe import recipe_decoder_state_dict

    before = load_average()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = recipe_weights_file(tmp)
        decoder = Path(tmp) / "decoder_seed0.pt"
        torch.save(recipe_decoder_state_dict(0), decoder)
        workers = {}
        try:
            for side, python in (("microsam", args.microsam_python), ("ours", sys.executable)):
                maps_out = Path(tmp) / side
                maps_out.mkdir()
                cmd = [python, str(WORKER), "--impl", side, "--weights", str(weights), "--decoder", str(decoder)]
                workers[side] = WorkerProcess([*cmd, "--threads", str(args.threads), "--maps-out", str(maps_out)])
            diffs = {
                name: float(
                    np.abs(
                        np.load(Path(tmp) / "ours" / f"{name}.npy")
                        - np.load(Path(tmp) / "microsam" / f"{name}.npy")
                    ).max()
                )
                for name in ("nuclei", "histo")
            }
            if "maps" not in args.skip:
                for name in ("nuclei", "histo"):
                    results[f"maps {name}"] = interleaved(workers, [f"maps {name} 1"] * args.rounds, f"maps {name}")
            if "stack" not in args.skip:
                commands = [f"slice {k}" for k in range(min(args.slices, 30))]
                results["AIS stack"] = interleaved(workers, commands, "AIS slice")
            if "apg" not in args.skip:
                results["APG"] = interleaved(workers, ["apg 1"] * args.rounds, "APG")
        finally:
            for worker in workers.values():
                worker.close()
    after = load_average()

    versions = {side: worker.info["torch"] for side, worker in workers.items()}
    lines = [
        f"Instance segmentation, ours vs micro-sam 1.8.14: {started}, {args.threads} threads, "
        f"torch ours {versions['ours']}, micro-sam's {versions['microsam']}, {os.cpu_count()} CPUs",
        f"load average (1, 5, 15 min) before {before}, after {after}",
        "maps max |ours - micro-sam|: " + ", ".join(f"{n} {d:.1e}" for n, d in diffs.items()) + " (tolerance 1e-3)",
        "",
        "| job | micro-sam | ours | speed-up | median of rounds' ratios | rounds | objects (micro-sam / ours) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {
        "maps nuclei": "maps from a cached embedding, nuclei 512x512",
        "maps histo": "maps from a cached embedding, histo 300x500",
        "AIS stack": f"AIS, {args.slices} slices 512x512 (encoder + maps + watershed)",
        "APG": "APG on nuclei 512x512 (from embedding and maps)",
    }
    for key, result in results.items():
        lines.append(row(labels[key], result, total=key == "AIS stack"))
    report = "\n".join(lines)
    print("\n" + report)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"instance-{stamp}.md").write_text(report + "\n")
    raw = {"args": vars(args), "load_before": before, "load_after": after, "maps_diff": diffs, "results": results}
    (RESULTS / f"instance-{stamp}.json").write_text(json.dumps(raw, indent=1))
    if max(diffs.values()) > 1e-3:
        sys.exit("the two sides' maps differ by more than 1e-3")


if __name__ == "__main__":
    main()
