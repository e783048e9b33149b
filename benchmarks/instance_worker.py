"""Times one implementation's instance segmentation steps; driven by bench_instance.py.

Runs under either venv: ``--impl ours`` imports napari_mobilesam; ``--impl microsam``
imports micro-sam 1.8.14 (installed only in its own venv, never a dependency of
this project) and its ``mobile_sam``.

A small server on stdin/stdout, so that bench_instance.py keeps both
implementations loaded and alternates them call by call. After loading it
prints one JSON line ``{"impl", "torch"}`` and writes its maps of the two
images to ``--maps-out`` (``<name>.npy``), then answers each line with one JSON
line ``{"times": [...], "objects": [...]}`` until ``quit``:

- ``maps NAME N``: N times the three maps of image NAME (``nuclei`` 512x512,
  ``histo`` 300x500) from its embedding computed once at start: ours
  ``instance_maps(embedding, decoder)``; micro-sam's
  ``InstanceSegmentationWithDecoder.initialize(image, image_embeddings=...)``,
  i.e. its decoder on precomputed embeddings;
- ``slice K``: AIS on slice K of the stack, the whole way: encoder, maps,
  watershed with micro-sam's defaults (micro-sam: ``initialize(slice)`` then
  ``generate()``, the loop its ``automatic_instance_segmentation`` runs per
  slice; ours: ``Predictor.embed``, ``instance_maps``, ``watershed_from_maps``);
- ``apg N``: N times APG on the nuclei image with its defaults, from the
  embedding and maps computed once (micro-sam: ``AutomaticPromptGenerator.generate()``
  after one ``initialize``; ours: ``segment_apg``). The prompts come from each
  side's maps, which agree to ~1e-5, so both decode the same points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
IMAGES = ("nuclei", "histo")
STACK_SLICES = 30


def stack_slice(index: int) -> np.ndarray:
    """Slice ``index`` of the benchmark stack: the 512x512 StarDist nuclei image, shifted a little per slice."""
    import tifffile

    image = tifffile.imread(DATA / "nuclei2d.tif")
    return np.ascontiguousarray(np.roll(image, (7 * index, 11 * index), axis=(0, 1)))


def images() -> dict[str, np.ndarray]:
    out = {}
    for name in IMAGES:
        with np.load(DATA / f"{name}.npz") as data:
            out[name] = data["image"]
    return out


class MicroSam:
    """micro-sam's own objects, as its documentation builds them."""

    def __init__(self, weights: str, decoder_weights: str) -> None:
        from micro_sam import util
        from micro_sam.instance_segmentation import (
            AutomaticPromptGenerator,
            InstanceSegmentationWithDecoder,
            get_decoder,
        )

        self.util = util
        self.predictor = util.get_sam_model(model_type="vit_t", checkpoint_path=weights, device="cpu")
        # mobile_sam builds the model in eval mode and then loads the weights, so TinyViT's cached
        # attention-bias table (taken at .eval()) still holds the initial zeros; micro-sam 1.8.14 never
        # calls .eval() again, and its vit_t embeddings ignore the trained attention biases. Refreshed
        # here so that both sides encode alike (the cost is the same either way).
        self.predictor.model.eval()
        decoder_state = torch.load(decoder_weights, map_location="cpu", weights_only=True)
        self.decoder = get_decoder(self.predictor.model.image_encoder, decoder_state, device="cpu")
        self.ais = InstanceSegmentationWithDecoder(self.predictor, self.decoder)
        self.apg = AutomaticPromptGenerator(self.predictor, self.decoder)
        self.images = images()
        self.embeddings = {
            name: util.precompute_image_embeddings(self.predictor, image, ndim=2, verbose=False)
            for name, image in self.images.items()
        }
        self.apg.initialize(self.images["nuclei"], image_embeddings=self.embeddings["nuclei"])

    def maps(self, name: str) -> np.ndarray:
        self.ais.initialize(self.images[name], image_embeddings=self.embeddings[name])
        return np.stack([self.ais._foreground, self.ais._center_distances, self.ais._boundary_distances])

    def ais_slice(self, image: np.ndarray) -> int:
        self.ais.initialize(image)
        return int(self.ais.generate().max())

    def run_apg(self) -> int:
        return int(self.apg.generate().max())


class Ours:
    """napari-mobilesam's engine: the model as users load it, the recipe decoder."""

    def __init__(self, weights: str, decoder_weights: str) -> None:
        from napari_mobilesam import Predictor, load_model
        from napari_mobilesam.model.instance_decoder import build_instance_decoder
        from napari_mobilesam.segment.instance_maps import instance_maps, microsam_rgb

        self.instance_maps, self.microsam_rgb = instance_maps, microsam_rgb
        self.predictor = Predictor(load_model(weights, device="cpu"))
        self.decoder = build_instance_decoder(torch.load(decoder_weights, map_location="cpu", weights_only=True))
        self.images = images()
        self.embeddings = {name: self.predictor.embed(microsam_rgb(image)) for name, image in self.images.items()}
        self.apg_maps = self.maps("nuclei")

    def maps(self, name: str) -> np.ndarray:
        return self.instance_maps(self.embeddings[name], self.decoder)

    def ais_slice(self, image: np.ndarray) -> int:
        from napari_mobilesam.segment.instance_watershed import watershed_from_maps

        embedding = self.predictor.embed(self.microsam_rgb(image))
        return int(watershed_from_maps(self.instance_maps(embedding, self.decoder)).max())

    def run_apg(self) -> int:
        from napari_mobilesam.segment.apg import segment_apg

        return int(segment_apg(self.embeddings["nuclei"], self.apg_maps, self.predictor).max())


def timed(fn, repeats: int) -> dict:
    times, objects = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        objects.append(result if isinstance(result, int) else None)
    return {"times": times, "objects": objects}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "microsam"], required=True)
    parser.add_argument("--weights", required=True, help="SAM (vit_t) state dict")
    parser.add_argument("--decoder", required=True, help="instance decoder state dict")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--maps-out", required=True, help="folder for <image>.npy maps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    impl = (MicroSam if args.impl == "microsam" else Ours)(args.weights, args.decoder)
    for name in IMAGES:
        np.save(Path(args.maps_out) / f"{name}.npy", impl.maps(name))  # also the warm-up
    impl.run_apg()
    print(json.dumps({"impl": args.impl, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        job, *rest = line.split()
        if job == "maps":
            result = timed(lambda name=rest[0]: impl.maps(name), int(rest[1]))
        elif job == "slice":
            image = stack_slice(int(rest[0]))
            result = timed(lambda image=image: impl.ais_slice(image), 1)
        else:
            result = timed(impl.run_apg, int(rest[0]))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
