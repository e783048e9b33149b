"""Whole stacks: ``segment_stack`` end to end on a 30 x 512 x 512 stack, cold and warm embedding cache.

Usage (from the repo root, in the project's venv)::

    python benchmarks/bench_stack.py [--source synthetic|nuclei3d|nuclei2d] [--slices 30]
                                     [--sampler boxes] [--threads 2] [--out results.json]

Stacks (uint16, 512 x 512 slices, every slice different so that no slice hits another's embedding):

- ``synthetic`` (default): the plugin's procedural nuclei sample
  (:func:`napari_mobilesam._sample_data.synthetic_nuclei`, 72 nuclei in a
  36-slice volume, slices 3-32): 9-28 nuclei, 11-39 proposed boxes per slice;
- ``nuclei3d``: StarDist's 3D nuclei (``tests/data/nuclei3d.tif``, 61 x 57),
  each slice resized to 512 x 512: 7-14 nuclei ~70 px across, but the default
  box proposer splits them into its maximum of 320 boxes per slice;
- ``nuclei2d``: StarDist's 2D nuclei (~125 nuclei, ~205 boxes), moved by 3 px
  down and 2 px right from slice to slice: a crowded stack.

Three runs of ``segment_stack(stack, model, cache=..., image_id=...,
sampler=..., pred_iou_thresh=0, stability_score_thresh=0)``, linking on.
The thresholds are off so that every proposed mask is kept, upsampled,
painted and linked, as the official weights keep most masks of real nuclei
(the recipe weights would pass none of SAM's thresholds, and the end of the
pipeline would cost nothing):

- **cold**: a new disk cache in a fresh temporary folder: every slice is
  encoded and its embedding written (zarr, 4 MiB per slice);
- **warm (memory)**: the same call again on the same cache;
- **warm (disk)**: a new :class:`~napari_mobilesam.cache.embedding_cache.EmbeddingCache` on the
  same folder, as a new session would (read and checksum 4 MiB per slice).

The warm runs must give the cold run's labels. Building the model is not
timed. Weights: the seeded test weights of ``tests/recipe.py`` (the official
ones cannot be fetched offline); timings are the real model's (same
architecture and arithmetic). The load average is reported: on a shared
machine every number is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, recipe_weights_file

DATA = ROOT / "tests" / "data"


def make_stack(source: str, slices: int, size: int) -> np.ndarray:
    import tifffile
    from skimage.transform import resize

    if source == "synthetic":
        from napari_mobilesam._sample_data import synthetic_nuclei

        # Six more slices than asked, three dropped at each end: the ends of the volume hold
        # no nuclei, and a slice of pure noise gets the proposer's maximum of boxes.
        volume, _ = synthetic_nuclei((slices + 6, size, size), n_nuclei=round(72 * (slices + 6) / 36), seed=0)
        return volume[3 : 3 + slices]
    if source == "nuclei3d":
        volume = tifffile.imread(DATA / "nuclei3d.tif")
        if slices > volume.shape[0]:
            raise SystemExit(f"nuclei3d has {volume.shape[0]} slices; ask for at most that many.")
        planes = [resize(plane, (size, size), order=1, preserve_range=True) for plane in volume[:slices]]
        return np.stack(planes).round().astype(np.uint16)
    image = tifffile.imread(DATA / "nuclei2d.tif")
    if image.shape != (size, size):
        image = resize(image, (size, size), order=1, preserve_range=True).round().astype(np.uint16)
    return np.stack([np.roll(image, (3 * z, 2 * z), axis=(0, 1)) for z in range(slices)])


def timed_run(stack, model, cache, args) -> tuple[np.ndarray, dict]:
    from napari_mobilesam.segment.stack import segment_stack

    load_before = os.getloadavg()[0]
    stats_before = dict(cache.stats)
    started = time.perf_counter()
    labels = segment_stack(
        stack,
        model,
        cache=cache,
        image_id="bench-stack",
        sampler=args.sampler,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )
    seconds = time.perf_counter() - started
    stats = {key: cache.stats[key] - stats_before[key] for key in cache.stats}
    return labels, {
        "seconds": seconds,
        "per_slice_s": seconds / len(stack),
        "cache": stats,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("synthetic", "nuclei3d", "nuclei2d"), default="synthetic")
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sampler", choices=("boxes", "grid"), default="boxes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (on a busy machine 1 can be faster)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    import torch

    from napari_mobilesam import load_model
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.engine.preprocessing import to_uint8_rgb
    from napari_mobilesam.segment.box_proposals import ForegroundBoxProposer

    torch.set_num_threads(args.threads)
    stack = make_stack(args.source, args.slices, args.size)
    with tempfile.TemporaryDirectory() as folder:  # loaded as users load weights (engine settings included)
        model = load_model(recipe_weights_file(folder), device="cpu")
    boxes = [len(ForegroundBoxProposer()(to_uint8_rgb(plane))) for plane in stack]

    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(directory=folder)
        cold, runs["cold"] = timed_run(stack, model, cache, args)
        warm, runs["warm (memory)"] = timed_run(stack, model, cache, args)
        from_disk, runs["warm (disk)"] = timed_run(stack, model, EmbeddingCache(directory=folder), args)
    same = bool(np.array_equal(cold, warm) and np.array_equal(cold, from_disk))
    if not same:
        raise SystemExit("The warm runs' labels differ from the cold run's.")

    result = {
        "stack": f"{args.source} {stack.shape} {stack.dtype}",
        "boxes_per_slice": [min(boxes), float(np.mean(boxes)), max(boxes)],
        "objects": int(cold.max()),
        "sampler": args.sampler,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "runs": runs,
        "warm_speedup": {name: runs["cold"]["seconds"] / run["seconds"] for name, run in runs.items()},
        "labels_identical": same,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2), file=sys.stderr)

    print(
        f"\nStack: {result['stack']}, sampler {args.sampler!r}, boxes per slice "
        f"{min(boxes)}-{max(boxes)} (mean {np.mean(boxes):.0f}), {result['objects']} objects after linking; "
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores.\n"
    )
    print("| run | seconds | s / slice | encoded | from memory | from disk | cold / this | load avg (before, after) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, run in runs.items():
        cache_stats = run["cache"]
        print(
            f"| {name} | {run['seconds']:.1f} | {run['per_slice_s']:.2f} | {cache_stats['misses']} | "
            f"{cache_stats['memory_hits']} | {cache_stats['disk_hits']} | {result['warm_speedup'][name]:.2f}x | "
            f"{run['load_before']:.1f}, {run['load_after']:.1f} |"
        )


if __name__ == "__main__":
    main()
