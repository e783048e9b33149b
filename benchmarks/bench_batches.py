"""Does encoding slices in batches pay on this device? Interleaved A/B in one process.

Usage (from the repo root, in the project's venv)::

    python benchmarks/bench_batches.py --batches 1 2 4 --slices 4 --rounds 8 [--precision bfloat16] [--device cuda]

Each round encodes the same ``--slices`` 512 x 512 slices with
``Predictor.embed_many`` once per batch size, the order rotated every round so
that the machine's slow spells hit every size alike; reported are each
size's median seconds per slice and its ratio to batch 1, and the largest
difference of the embeddings from one-at-a-time ones. On a shared machine
the numbers are noisy: read the medians, run it again before trusting a
difference of a few percent.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from common import recipe_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from napari_mobilesam import Predictor
    from napari_mobilesam.engine.batching import encode_batch_size

    predictor = Predictor(recipe_model(args.device), precision=args.precision)
    rng = np.random.default_rng(0)
    slices = [rng.integers(0, 4000, (512, 512), dtype=np.uint16) for _ in range(args.slices)]
    alone = [e.features for e in predictor.embed_many(slices, batch_size=1)]  # also the warm-up
    per_slice = {batch: [] for batch in args.batches}
    differences = {}
    for round_index in range(args.rounds):
        shift = round_index % len(args.batches)
        for batch in args.batches[shift:] + args.batches[:shift]:
            start = time.perf_counter()
            found = predictor.embed_many(slices, batch_size=batch)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            per_slice[batch].append((time.perf_counter() - start) / len(slices))
            differences[batch] = max(float(np.abs(e.features - a).max()) for e, a in zip(found, alone, strict=True))
        print(
            f"round {round_index + 1}: " + "  ".join(f"b{b} {per_slice[b][-1]:.3f}" for b in args.batches), flush=True
        )
    base = statistics.median(per_slice[args.batches[0]])
    chosen = encode_batch_size(predictor.device, predictor.precision)
    print(
        f"\n{args.device}, {predictor.precision}, {args.threads} threads, torch {torch.__version__}; chosen: {chosen}"
    )
    for batch in args.batches:
        median = statistics.median(per_slice[batch])
        print(
            f"batch {batch:3d}: {median:.3f} s/slice (median of {args.rounds}), {base / median:5.2f}x batch "
            f"{args.batches[0]}; max |batched - alone| {differences[batch]:.1e}"
        )


if __name__ == "__main__":
    main()
