"""Reduced precision against float32: the embedding's error and the masks it leads to, on the reference cases.

The issue's bar (#18): masks from bfloat16 embeddings against float32 ones,
IoU >= 0.98 for >= 95 % of masks and a median >= 0.995; segment-everything on
the nuclei image with >= 95 % of objects matched at IoU >= 0.9. The bfloat16
encoder runs here on a CPU without native bfloat16 (emulated: slow but the
same rounding), on the recipe weights. Each test prints its numbers
(``pytest -s``); docs/benchmarks.md records them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_mobilesam import Predictor, segment_everything
from recipe import DATA

# bfloat16 is emulated on CPUs without it (minutes per image): a whole pipeline at full size.
pytestmark = pytest.mark.slow

CASES = json.loads((DATA / "cases.json").read_text())["images"]
IMAGES = sorted(CASES)
EVERYTHING = {"sampler": "boxes", "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def images():
    out = {}
    for name in IMAGES:
        with np.load(DATA / f"{name}.npz") as data:
            out[name] = {key: data[key] for key in data.files}
    return out


@pytest.fixture(scope="module")
def embeddings(recipe_model, images):
    """name -> {precision: ImageEmbedding} for float32 and bfloat16."""
    out = {}
    for precision in ("float32", "bfloat16"):
        predictor = Predictor(recipe_model, precision=precision)
        for name in IMAGES:
            out.setdefault(name, {})[precision] = predictor.embed(images[name]["image"])
    return out


def prompts_of(case: dict, arrays: dict) -> dict:
    """``Predictor.predict``'s keyword arguments for a case of cases.json (its mask input from the arrays)."""
    kwargs = {"point_coords": case["points"], "point_labels": case["labels"]}
    kwargs.update(box=case.get("box", case.get("boxes")), multimask_output=case["multimask_output"])
    return {**kwargs, "mask_input": arrays[case["mask_input"]] if case["mask_input"] else None}


def relative_error(reduced: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(reduced - exact) / np.linalg.norm(exact))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_embeddings_stay_float32_and_close(embeddings):
    for name in IMAGES:
        exact, reduced = embeddings[name]["float32"], embeddings[name]["bfloat16"]
        assert reduced.features.dtype == np.float32 and reduced.input_size == exact.input_size
        error = relative_error(reduced.features, exact.features)
        print(f"\n{name}: bfloat16 embedding relative error {error:.4f}")
        assert 0 < error < 0.03


def test_masks_from_bf16_embeddings_match_float32(recipe_model, embeddings, images):
    predictor = Predictor(recipe_model)
    ious, per_case = [], {}
    for name in IMAGES:
        for case_name, case in CASES[name]["cases"].items():
            kwargs = prompts_of(case, images[name])
            masks = {}
            for precision in ("float32", "bfloat16"):
                predictor.set_embedding(embeddings[name][precision])
                masks[precision] = predictor.predict(**kwargs)[0].reshape(-1, *CASES[name]["shape"][:2])
            values = [iou(a, b) for a, b in zip(masks["float32"], masks["bfloat16"], strict=True)]
            per_case[f"{name}/{case_name}"] = values
            ious.extend(values)
    ious = np.array(ious)
    for case, values in per_case.items():
        print(f"\n{case}: {len(values)} masks, IoU min {min(values):.4f} median {np.median(values):.4f}")
    share, median = float((ious >= 0.98).mean()), float(np.median(ious))
    print(f"\nall {ious.size} masks: IoU >= 0.98 for {share:.1%}, median {median:.4f}, min {ious.min():.4f}")
    assert share >= 0.95
    assert median >= 0.995


def matched_share(exact: np.ndarray, reduced: np.ndarray, threshold: float = 0.9) -> tuple[float, int]:
    """Share of ``exact``'s objects that have an object in ``reduced`` with IoU >= ``threshold``; and their count."""
    ids = [i for i in np.unique(exact) if i]
    matched = 0
    for i in ids:
        mine = exact == i
        candidates = [j for j in np.unique(reduced[mine]) if j]
        if any(iou(mine, reduced == j) >= threshold for j in candidates):
            matched += 1
    return (matched / len(ids) if ids else 1.0), len(ids)


def test_segment_everything_on_nuclei_matches_float32(recipe_model, embeddings, images):
    """With SAM's NMS the recipe weights' blob masks leave one object: the same one."""
    image = images["nuclei"]["image"]
    labels = {
        precision: segment_everything(embeddings["nuclei"][precision], recipe_model, image=image, **EVERYTHING)
        for precision in ("float32", "bfloat16")
    }
    share, count = matched_share(labels["float32"], labels["bfloat16"])
    back, count_back = matched_share(labels["bfloat16"], labels["float32"])
    print(f"\nsegment everything: {count} float32 objects, {share:.1%} matched; {count_back} bfloat16, {back:.1%}")
    assert count > 0
    assert share >= 0.95 and back >= 0.95


def test_every_proposed_object_on_nuclei_matches_float32(recipe_model, embeddings, images):
    """Each of the ~190 boxes segment-everything proposes on the nuclei image, decoded from either embedding.

    Painting all of them into one label image (NMS off) would compare paint orders, not
    objects: the recipe weights' masks are overlapping blobs, so a near tie in the
    predicted IoU reorders which blob covers which. Each box's own mask is the object.
    """
    from napari_mobilesam.segment.box_proposals import propose_boxes

    image = images["nuclei"]["image"]
    boxes = propose_boxes(image)
    predictor = Predictor(recipe_model)
    masks = {}
    for precision in ("float32", "bfloat16"):
        predictor.set_embedding(embeddings["nuclei"][precision])
        masks[precision] = predictor.predict(box=boxes, multimask_output=False)[0][:, 0]
    ious = np.array([iou(a, b) for a, b in zip(masks["float32"], masks["bfloat16"], strict=True)])
    share = float((ious >= 0.9).mean())
    print(f"\nevery proposed object: {len(boxes)} boxes, IoU >= 0.9 for {share:.1%}, median {np.median(ious):.4f}")
    assert len(boxes) > 100
    assert share >= 0.95
