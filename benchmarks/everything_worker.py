"""Times one automatic-segmentation run; run by bench_everything.py in either venv.

``--impl official`` runs the official ``SamAutomaticMaskGenerator`` (defaults:
32x32 grid, 64 points per batch, 3 masks per point); ``--impl ours`` runs
``segment_everything`` with the same parameters and ``--sampler grid|boxes``.
Both start from the same uint8 RGB image and include encoding. Prints one JSON line.

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
        start = time.perf_counter()
        params = {"pred_iou_thresh": 0.0} if args.every_mask else {}
        labels = segment_everything(image, model, sampler=args.sampler, **params)
        seconds = time.perf_counter() - start
        count = int(labels.max())
    print(
        json.dumps(
            {
                "impl": args.impl,
                "sampler": args.sampler,
                "every_mask": args.every_mask,
                "seconds": seconds,
                "objects": count,
            }
        )
    )


if __name__ == "__main__":
    main()
