"""Times one implementation's encoder and one click; run by bench_engine.py.

Runs under either venv: ``--impl ours`` imports napari_mobilesam,
``--impl official`` imports the official ``mobile_sam`` package (installed
only in the benchmark venv; never a dependency of this project).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CLICK = (np.array([[263.66, 293.22]]), np.array([1]))


def timed(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def load(impl: str, weights: str):
    if impl == "official":
        state = torch.load(weights, map_location="cpu", weights_only=True)
        from mobile_sam import SamPredictor, sam_model_registry

        model = sam_model_registry["vit_t"]()
        model.load_state_dict(state)
        model.eval()  # after loading: the official attention-bias cache is taken here
        return model, SamPredictor(model)
    from napari_mobilesam import Predictor, load_model

    model = load_model(weights, device="cpu")  # what users call: strict load, engine settings
    return model, Predictor(model)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "official"], required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--embedding-out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, predictor = load(args.impl, args.weights)
    with np.load(DATA / "nuclei.npz") as ref:
        image, resized = ref["image"], ref["resized"]
    x = model.preprocess(torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float())

    with torch.inference_mode():
        encoder = timed(lambda: model.image_encoder(x), args.repeats, warmup=2)
        embedding = model.image_encoder(x)
    if args.embedding_out:
        np.save(args.embedding_out, embedding.numpy())

    predictor.set_image(image)
    click = timed(lambda: predictor.predict(point_coords=CLICK[0], point_labels=CLICK[1]), args.repeats * 4, warmup=3)
    masks, _, _ = predictor.predict(point_coords=CLICK[0], point_labels=CLICK[1])
    assert masks.shape == (3, 512, 512)
    print(json.dumps({"impl": args.impl, "torch": torch.__version__, "encoder_s": encoder, "click_s": click}))


if __name__ == "__main__":
    main()
