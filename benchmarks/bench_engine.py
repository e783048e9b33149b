"""Encoder and one-click speed: ours vs the official MobileSAM, same weights, image, threads.

Usage (from the repo root, in the project's venv)::

    python benchmarks/bench_engine.py --official-python /path/to/official-venv/bin/python

The official venv holds ``torch==2.14.1 torchvision==0.29.1 mobilesam-mirror timm``
(see docs/benchmarks.md). Both implementations run as fresh processes,
alternating round by round so that machine noise hits both alike; the report
gives medians and the ratio official / ours, and checks that the two
embeddings agree within the parity tolerance (1e-3).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "benchmarks" / "engine_worker.py"


def run_worker(python: str, impl: str, weights: Path, threads: int, repeats: int, embedding_out: Path) -> dict:
    cmd = [
        python,
        str(WORKER),
        "--impl",
        impl,
        "--weights",
        str(weights),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
        "--embedding-out",
        str(embedding_out),
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-python", default=os.environ.get("OFFICIAL_PYTHON", "../venv_official/bin/python"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))

    from recipe import save_recipe_weights

    results = {"ours": {"encoder_s": [], "click_s": []}, "official": {"encoder_s": [], "click_s": []}}
    versions = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_recipe_weights(tmp)
        for round_index in range(args.rounds):
            for impl, python in (("official", args.official_python), ("ours", sys.executable)):
                result = run_worker(python, impl, weights, args.threads, args.repeats, Path(tmp) / f"{impl}.npy")
                versions[impl] = result["torch"]
                for key in ("encoder_s", "click_s"):
                    results[impl][key] += result[key]
                print(
                    f"round {round_index + 1} {impl:8s} encoder {statistics.median(result['encoder_s']) * 1e3:7.1f} ms"
                    f"  click {statistics.median(result['click_s']) * 1e3:6.1f} ms",
                    flush=True,
                )
        diff = float(np.abs(np.load(Path(tmp) / "ours.npy") - np.load(Path(tmp) / "official.npy")).max())

    print(f"\nthreads={args.threads}, torch ours {versions['ours']}, official {versions['official']}")
    print(f"embedding max |ours - official| = {diff:.2e} (tolerance 1e-3)")
    for key, label in (("encoder_s", "encoder, 1024x1024 input"), ("click_s", "one click, 3 masks at 512x512")):
        ours = statistics.median(results["ours"][key])
        official = statistics.median(results["official"][key])
        print(
            f"{label:32s} official {official * 1e3:8.1f} ms   ours {ours * 1e3:8.1f} ms   "
            f"speed-up {official / ours:5.2f}x"
        )


if __name__ == "__main__":
    main()
