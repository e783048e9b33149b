"""Ours against the official code on the pinned torch and on the newest, each pair on the same torch.

Usage (from the repo root)::

    python benchmarks/bench_torch_versions.py \\
        --pinned  .venv/bin/python             /work/venv-official213/bin/python \\
        --newest  /work/venv-t214/bin/python   /work/venv-t214/bin/python \\
        --rounds 8 --precision float32

Each pair is ``OURS_PYTHON OFFICIAL_PYTHON``: the venv ours runs in (the
project installed, ``pip install -e .``) and a venv with the official code
(``mobilesam-mirror timm`` and the matching torchvision) on the same torch;
one venv may serve both. Runs ``bench_engine.py`` once per pair (further
options are passed on) and prints a table of the medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pinned", nargs=2, metavar=("OURS", "OFFICIAL"), required=True)
    parser.add_argument("--newest", nargs=2, metavar=("OURS", "OFFICIAL"), required=True)
    args, passed_on = parser.parse_known_args()
    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (ours, official) in (("pinned", args.pinned), ("newest", args.newest)):
            out = Path(tmp) / f"{label}.json"
            cmd = [sys.executable, str(HERE / "bench_engine.py"), "--ours-python", ours]
            cmd += ["--official-python", official, "--json", str(out), *passed_on]
            print(f"== {label}: {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True)
            summaries[label] = json.loads(out.read_text())
    print("\n| torch | ours' precision | | official | ours | speed-up |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for label, summary in summaries.items():
        for name, result in summary["results"].items():
            print(
                f"| {summary['torch']['ours']} ({label}) | {summary['precision']} | {name} | "
                f"{result['official_s'] * 1e3:.1f} ms | {result['ours_s'] * 1e3:.1f} ms | {result['ratio']:.2f}x |"
            )


if __name__ == "__main__":
    main()
