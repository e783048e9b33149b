"""Times one automatic-segmentation run; run by bench_everything.py in either venv.

``--impl official`` runs the official ``SamAutomaticMaskGenerator`` (defaults:
32x32 grid, 64 points per batch, 3 masks per point); ``--impl ours`` runs
``segment_everything`` with the same parameters and ``--sampler grid|boxes``.
Both start from the same uint8 RGB image and include encoding. Ours is timed
on its second call in the process (the first, on the mirrored image, is
reported as ``first_call_seconds``); the official generator's one-time costs
are a negligible part of its minutes. Prints one JSON line.

With the recipe weights no mask reaches SAM's default ``pred_iou_thresh``
(0.88), so our pipeline skips every prompt's mask head; ``--every-mask``
(``pred_iou_thresh=0``) makes it decode and filter every mask instead, the
worst case (with real weights the truth lies between). The official
generator upsamples every mask before filtering, whatever the threshold.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "official"], required=True)
    parser.add_argument("--sampler", choices=["grid", "boxes"], default="grid")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--every-mask",
        action="store_true",
        help="ours with pred_iou_thresh=0: no prompt skips the mask head (the worst case for us)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with np.load(DATA / "nuclei.npz") as ref:
        image = ref["image"]  # 512x512 uint8 RGB

    if args.impl == "official":
        from mobile_sam import SamAutomaticMaskGenerator, sam_model_registry

        model = sam_model_registry["vit_t"]()
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        model.eval()
        generator = SamAutomaticMaskGenerator(model)
        start = time.perf_counter()
        masks = generator.generate(image)
        seconds = time.perf_counter() - start
        count = len(masks)
    else:
        from napari_mobilesam import load_model, segment_everything

        model = load_model(args.weights, device="cpu")
        params = {"pred_iou_thresh": 0.0} if args.every_mask else {}
        # First, a call on the mirrored image in this fresh process: it pays the one-time costs
        # (lazy imports of scikit-image, first allocations) and is reported on its own. Mirrored,
        # so that nothing of it (box proposals are remembered per image) serves the timed call.
        start = time.perf_counter()
        segment_everything(np.ascontiguousarray(image[:, ::-1]), model, sampler=args.sampler, **params)
        first_call = time.perf_counter() - start
        start = time.perf_counter()
        labels = segment_everything(image, model, sampler=args.sampler, **params)
        seconds = time.perf_counter() - start
        count = int(labels.max())
    result = {"impl": args.impl, "sampler": args.sampler, "every_mask": args.every_mask, "seconds": seconds}
    if args.impl == "ours":
        result["first_call_seconds"] = first_call
    print(json.dumps({**result, "objects": count}))


if __name__ == "__main__":
    main()
