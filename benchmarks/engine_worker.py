"""Times one implementation's encoder and one click; driven by bench_engine.py.

Runs under either venv: ``--impl ours`` imports napari_mobilesam,
``--impl official`` imports the official ``mobile_sam`` package (installed
only in the benchmark venv; never a dependency of this project).

A small server on stdin/stdout, so that bench_engine.py can keep both
implementations loaded and alternate them call by call: after loading (and
saving the embedding) it prints one JSON line ``{"impl", "torch"}``, then
answers each line ``encoder N``, ``click N`` or ``stack N`` with one JSON
line ``{"times": [...]}`` (N timed calls, seconds) until ``quit`` or end of
input. ``stack`` embeds ``--stack-slices`` slices of 512 x 512: the official
code one ``set_image`` at a time, ours with ``Predictor.embed_many`` (the
device's batch, or ``NAPARI_MOBILESAM_ENCODE_BATCH``). ``--precision``
(ours only) is the encoder's precision; the official code is float32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CLICK = (np.array([[263.66, 293.22]]), np.array([1]))


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def load(impl: str, weights: str, precision: str = "float32"):
    if impl == "official":
        state = torch.load(weights, map_location="cpu", weights_only=True)
        from mobile_sam import SamPredictor, sam_model_registry

        model = sam_model_registry["vit_t"]()
        model.load_state_dict(state)
        model.eval()  # after loading: the official attention-bias cache is taken here
        return model, SamPredictor(model)
    from napari_mobilesam import Predictor, load_model

    model = load_model(weights, device="cpu", precision=precision)  # what users call
    return model, Predictor(model)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "official"], required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--embedding-out", default=None)
    parser.add_argument("--precision", default="float32", help="ours: the encoder's precision")
    parser.add_argument("--stack-slices", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, predictor = load(args.impl, args.weights, args.precision)
    reduced = args.impl == "ours" and predictor.precision != "float32"
    if reduced:
        from napari_mobilesam.engine.precision import torch_dtype
    dtype = torch_dtype(predictor.precision) if reduced else None
    with np.load(DATA / "nuclei.npz") as ref:
        image, resized = ref["image"], ref["resized"]
    x = model.preprocess(torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float())

    def encode():
        with torch.inference_mode():
            return model.image_encoder(x) if dtype is None else model.image_encoder(x, dtype=dtype)

    slices = [image] * args.stack_slices  # the same pixels: no cache is involved on either side

    def stack():
        if args.impl == "official":
            for plane in slices:
                predictor.set_image(plane)
        else:
            predictor.embed_many(slices)

    def click():
        return predictor.predict(point_coords=CLICK[0], point_labels=CLICK[1])

    embedding = encode()
    if args.embedding_out:
        np.save(args.embedding_out, embedding.numpy())
    encode()  # warm-up
    predictor.set_image(image)
    masks, _, _ = click()
    assert masks.shape == (3, 512, 512)
    for _ in range(3):
        click()
    calls = {"encoder": encode, "click": click, "stack": stack}
    precision = "float32" if args.impl == "official" else predictor.precision
    print(json.dumps({"impl": args.impl, "torch": torch.__version__, "precision": precision}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        name, repeats = line.split()
        print(json.dumps({"times": timed(calls[name], int(repeats))}), flush=True)


if __name__ == "__main__":
    main()
