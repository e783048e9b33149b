"""micro-sam's AIS reference fixtures (tests/data/REFERENCE.md, section AIS) and our maps of the same images.

Our maps take ~20 s an image on two cores (the decoder runs at 1024x1024), so
they are computed once per test session and shared by the test files.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache

import numpy as np

from recipe import DATA, recipe_decoder_state_dict

AIS_CASES = json.loads((DATA / "ais_cases.json").read_text())
AIS_IMAGES = sorted(AIS_CASES["images"])


@cache
def reference(name: str) -> dict[str, np.ndarray]:
    """``image`` (uint8 RGB), micro-sam's ``maps`` (3, H, W) and ``labels`` (H, W) for one image."""
    with np.load(DATA / f"{name}.npz") as data:
        image = data["image"]
    with np.load(DATA / f"{name}_ais.npz") as data:
        return {"image": image, "maps": data["maps"], "labels": data["labels"]}


@lru_cache(maxsize=1)
def recipe_instance_decoder():
    """The instance decoder with the seed-0 AIS recipe weights."""
    from napari_mobilesam.model.instance_decoder import build_instance_decoder

    return build_instance_decoder(recipe_decoder_state_dict(0))


@cache
def our_embedding_and_maps(name: str, model):
    """Our embedding of micro-sam's input for the image, and our maps from it (``model``: the recipe SAM)."""
    from napari_mobilesam import Predictor
    from napari_mobilesam.segment.instance_maps import instance_maps, microsam_rgb

    embedding = Predictor(model).embed(microsam_rgb(reference(name)["image"]))
    return embedding, instance_maps(embedding, recipe_instance_decoder())


def contingency_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``(max(first) + 1, max(second) + 1)`` IoU of every pair of labels (row/column 0: background)."""
    n_first, n_second = int(first.max()) + 1, int(second.max()) + 1
    pairs = first.astype(np.int64).ravel() * n_second + second.ravel()
    intersection = np.bincount(pairs, minlength=n_first * n_second).reshape(n_first, n_second)
    union = intersection.sum(1)[:, None] + intersection.sum(0)[None, :] - intersection
    return intersection / np.maximum(union, 1)


def one_to_one(reference_labels: np.ndarray, labels: np.ndarray, min_iou: float) -> tuple[int, int, int]:
    """``(matched, reference objects, our objects)``: pairs with IoU >= ``min_iou`` (> 0.5 makes them unique)."""
    iou = contingency_iou(reference_labels, labels)[1:, 1:]
    matched = int((iou >= min_iou).sum()) if iou.size else 0
    return matched, iou.shape[0], iou.shape[1]


def recovered_fraction(truth: np.ndarray, labels: np.ndarray, min_iou: float = 0.9) -> float:
    """Fraction of the true objects matched by one of ``labels`` with IoU >= ``min_iou``."""
    iou = contingency_iou(truth, labels)
    ids = np.unique(truth)[1:]
    if iou.shape[1] == 1:
        return 0.0
    return float((iou[ids, 1:].max(axis=1) >= min_iou).mean())


def assert_label_image(labels: np.ndarray, shape: tuple[int, int], raster_order: bool = True) -> None:
    """``(H, W)`` int32, ids ``1..N`` without gaps; ``raster_order``: numbered by each object's first pixel."""
    assert labels.shape == shape and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 or labels.size == 0
    assert np.array_equal(ids[ids > 0], np.arange(1, int(labels.max()) + 1))
    if raster_order:
        present, first = np.unique(labels.ravel(), return_index=True)
        assert np.all(np.diff(first[present > 0]) > 0)
