"""Slices per second of ``segment``: in this process vs. a local dask cluster of 1 and 2 workers.

Usage (from the repo root, in the project's venv)::

    python benchmarks/bench_distributed.py [--weights mobile_sam.pt] [--slices 30] [--size 512]
                                           [--points-per-side 8] [--workers 1 2] [--out results.json]

The stack is the synthetic nuclei stack (``30 x 512 x 512`` uint16 by
default), written to a TIFF and segmented with the ``segment`` command's own
code path (:func:`napari_mobilesam.runners.file_jobs.segment_to_file`), disk cache
off so that every slice is encoded. Every configuration gets the machine's
cores: in-process, torch uses all of them; with ``N`` workers each worker
gets ``cores / N`` threads. Reported per configuration:

- ``total_s``: wall-clock time of the whole run, model loading and cluster start included;
- ``steady``: slices per second between the first and the last finished slice
  (what a long stack approaches);
- whether the labels equal the in-process run's (they must).

Without ``--weights`` the seeded test weights of ``tests/recipe.py`` are used:
timings are those of the real model (same architecture and arithmetic), only
the number of masks kept, hence the small post-processing cost, differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from common import recipe_weights_file


def run_config(image, output: Path, job, workers: int | None) -> dict:
    from napari_mobilesam.io.labels import read_labels
    from napari_mobilesam.runners.file_jobs import segment_to_file

    stamps: list[float] = []

    def progress(done: int, total: int) -> None:
        stamps.append(time.perf_counter())

    started = time.perf_counter()
    segment_to_file(image, output, job, link_3d=True, workers=workers, progress=progress, resume=False)
    total = time.perf_counter() - started
    finished = stamps[1:]  # the first call reports 0 done
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else float("nan")
    return {"total_s": total, "slices_per_s": len(finished) / total, "steady": steady, "labels": read_labels(output)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="mobile_sam.pt (default: the seeded test weights)")
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    import torch

    from napari_mobilesam._sample_data import synthetic_nuclei
    from napari_mobilesam.io.images import read_image
    from napari_mobilesam.runners.slice_job import SliceJob

    cores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = recipe_weights_file(tmp)
        count = max(1, args.slices * args.size * args.size // 40_000)
        stack, _ = synthetic_nuclei((args.slices, args.size, args.size), n_nuclei=count)
        import tifffile

        tifffile.imwrite(tmp / "stack.tif", stack, photometric="minisblack")
        image = read_image(tmp / "stack.tif")
        params = (("points_per_side", args.points_per_side),)

        configs = [("in-process", None, cores)] + [(f"{n} dask worker(s)", n, max(1, cores // n)) for n in args.workers]
        reference = None
        for name, workers, threads in configs:
            job = SliceJob(
                task="segment",
                weights=str(Path(weights).absolute()),
                shape=stack.shape,
                dtype=str(stack.dtype),
                rgb=False,
                image_id=image.image_id,
                device="cpu",
                threads=threads,
                cache_dir=None,
                params=params,
            )
            if workers is None:
                torch.set_num_threads(threads)
            result = run_config(image, tmp / f"labels-{workers}.zarr", job, workers)
            labels = result.pop("labels")
            reference = labels if reference is None else reference
            result.update(
                config=name,
                workers=workers,
                threads_per_process=threads,
                equal_to_in_process=bool(np.array_equal(labels, reference)),
            )
            results.append(result)
            print(
                f"{name:>20}: {result['total_s']:7.1f} s total, {result['slices_per_s']:.3f} slices/s overall, "
                f"{result['steady']:.3f} slices/s steady, equal: {result['equal_to_in_process']}",
                flush=True,
            )

    machine = f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, CPU"
    print(f"\n{args.slices} slices of {args.size}x{args.size}, points_per_side={args.points_per_side}, {machine}\n")
    print("| run | threads per process | total (s) | slices/s overall | slices/s steady | labels equal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['config']} | {r['threads_per_process']} | {r['total_s']:.1f} | {r['slices_per_s']:.3f} | "
            f"{r['steady']:.3f} | {'yes' if r['equal_to_in_process'] else 'NO'} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
