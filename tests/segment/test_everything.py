"""segment_everything: the pipeline end to end with an oracle decoder, and its contract with recipe weights.

The oracle stands in for MobileSAM's decoder through the ``decoder`` parameter:
it returns low-res logits made from the ground-truth labels of the StarDist
nuclei image (the object under each point, or best matching each box, plus
smaller and larger variants, with noise), so every other step of the real
pipeline runs as it does with the model.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_mobilesam import ImageEmbedding, MobileSAMError, Predictor
from napari_mobilesam.engine.preprocessing import preprocess_shape
from napari_mobilesam.engine.prompts import check_prompts
from napari_mobilesam.segment.everything import EverythingSegmenter, point_grid, segment_everything
from napari_mobilesam.segment.label_image import paint_labels, remove_small_regions
from napari_mobilesam.segment.params import EverythingParams
from recipe import DATA
from support.oracle import OracleDecoder, recovered_fraction


def assert_label_image(labels: np.ndarray, shape: tuple[int, int]) -> None:
    assert labels.shape == shape and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, ids.size))  # 1..N, no gaps
    # Ids in raster order of each object's first pixel.
    present, first = np.unique(labels.ravel(), return_index=True)
    assert np.all(np.diff(first[present > 0]) > 0)


@pytest.fixture(scope="module")
def nuclei():
    return tifffile.imread(DATA / "nuclei2d.tif"), tifffile.imread(DATA / "nuclei2d_labels.tif")


# -- the oracle: the pipeline recovers the ground truth -------------------------------


def sampled_objects(truth: np.ndarray, points_per_side: int) -> np.ndarray:
    """The ids of the objects that hold at least one point of the grid (no other can be found by it)."""
    height, width = truth.shape
    points = np.round(point_grid(points_per_side) * [width, height]).astype(int)
    hit = truth[np.minimum(points[:, 1], height - 1), np.minimum(points[:, 0], width - 1)]
    return np.unique(hit[hit > 0])


def test_oracle_grid_recovers_the_nuclei(nuclei):
    # At SAM's default 32 points per side the grid spacing here is 16 px, and 12 of the 125 nuclei
    # are smaller: no grid point falls on them. 64 points per side (8 px) reach all but 2.
    image, truth = nuclei
    labels = segment_everything(image, decoder=OracleDecoder(truth), points_per_side=64)
    assert_label_image(labels, image.shape)
    assert recovered_fraction(truth, labels) >= 0.95


@pytest.mark.parametrize("region", [np.s_[:, :], np.s_[:, 130:430]], ids=["square", "portrait"])
def test_oracle_grid_defaults_recover_every_sampled_nucleus(nuclei, region):
    image, truth = nuclei[0][region], nuclei[1][region]
    labels = segment_everything(image, decoder=OracleDecoder(truth))
    assert_label_image(labels, image.shape)
    reachable = np.where(np.isin(truth, sampled_objects(truth, 32)), truth, 0)
    assert recovered_fraction(reachable, labels) >= 0.95


def test_oracle_boxes_recover_the_nuclei(nuclei):
    image, truth = nuclei
    steps = []
    labels = segment_everything(
        image, sampler="boxes", decoder=OracleDecoder(truth), progress=lambda done, total: steps.append((done, total))
    )
    assert_label_image(labels, image.shape)
    assert recovered_fraction(truth, labels) >= 0.95
    assert steps[-1][0] == steps[-1][1] and [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_oracle_from_an_embedding_with_cleanup(nuclei):
    image, truth = nuclei
    embedding = ImageEmbedding(np.zeros((256, 64, 64), np.float32), image.shape, preprocess_shape(*image.shape))
    labels = segment_everything(
        embedding, sampler="boxes", image=image, decoder=OracleDecoder(truth), min_mask_region_area=20
    )
    assert_label_image(labels, image.shape)
    assert recovered_fraction(truth, labels) >= 0.95
    assert np.bincount(labels.ravel())[1:].min() >= 20


def test_oracle_output_is_stable(nuclei):
    image, truth = nuclei[0][:200, :256], nuclei[1][:200, :256]
    first = segment_everything(image, decoder=OracleDecoder(truth), points_per_side=16)
    second = segment_everything(image, decoder=OracleDecoder(truth), points_per_side=16)
    assert first.max() > 5
    np.testing.assert_array_equal(first, second)


def test_filters_are_applied():
    truth = np.zeros((64, 64), np.uint16)
    truth[10:30, 10:30] = 1
    truth[40:60, 35:60] = 2
    decoder = OracleDecoder(truth)
    assert segment_everything(truth, decoder=decoder, points_per_side=8, pred_iou_thresh=0.99).max() == 0
    labels = segment_everything(truth, decoder=decoder, points_per_side=8)
    assert labels.max() == 2 and recovered_fraction(truth, labels, 0.95) == 1.0


# -- the overlap rule and the cleanup ---------------------------------------------------


def test_smaller_masks_lie_on_top_and_ids_follow_raster_order():
    big = np.ones((6, 6), bool)
    small = np.ones((2, 2), bool)
    covered = np.ones((2, 2), bool)
    boxes = np.array([[4, 4, 10, 10], [6, 6, 8, 8], [0, 0, 2, 2], [6, 6, 8, 8]])
    labels, source = paint_labels(
        (12, 12), boxes, [big, small, np.ones((2, 2), bool), covered], scores=np.array([0.9, 0.8, 0.7, 0.95])
    )
    assert labels.dtype == np.int32
    # The two 2x2 masks at the same place tie on area: the higher score (index 3) wins; index 1 vanishes.
    assert source.tolist() == [2, 0, 3]
    assert labels[0, 0] == 1 and labels[4, 4] == 2 and labels[7, 7] == 3
    assert np.count_nonzero(labels == 2) == 36 - 4


def test_cleanup_fills_holes_and_removes_islands():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a hole
    mask[16:18, 16:18] = True  # an island
    cleaned, changed = remove_small_regions(mask, 10)
    assert changed and cleaned[5, 5] and not cleaned[16:18, 16:18].any() and cleaned[2:12, 2:12].all()
    only_small = np.zeros((5, 5), bool)
    only_small[0, 0] = True
    only_small[3:5, 3:5] = True
    kept, _ = remove_small_regions(only_small, 10)
    assert kept[3:5, 3:5].all() and not kept[0, 0]  # every island small: the largest stays
    assert remove_small_regions(mask, 0) == (mask, False)


# -- errors ------------------------------------------------------------------------


def test_point_grid_is_sams():
    grid = point_grid(4)
    assert grid.shape == (16, 2)
    np.testing.assert_allclose(
        grid[:5], [[0.125, 0.125], [0.375, 0.125], [0.625, 0.125], [0.875, 0.125], [0.125, 0.375]]
    )


def test_defaults_are_sams():
    params = EverythingParams()
    assert (
        params.points_per_side,
        params.points_per_batch,
        params.pred_iou_thresh,
        params.stability_score_thresh,
        params.stability_score_offset,
        params.box_nms_thresh,
        params.min_mask_region_area,
    ) == (32, 64, 0.88, 0.95, 1.0, 0.7, 0)


def test_bad_input_is_a_clear_error(nuclei):
    image, truth = nuclei
    decoder = OracleDecoder(truth)
    with pytest.raises(MobileSAMError, match="sampler"):
        segment_everything(image, sampler="everything", decoder=decoder)
    with pytest.raises(MobileSAMError, match="one 2D image"):
        segment_everything(np.zeros((5, 64, 64)), decoder=decoder)
    with pytest.raises(MobileSAMError, match="crop_n_layers"):
        segment_everything(image, decoder=decoder, crop_n_layers=1)
    with pytest.raises(MobileSAMError, match="points_per_side"):
        segment_everything(image, decoder=decoder, points_per_side=0)
    embedding = ImageEmbedding(np.zeros((256, 64, 64), np.float32), image.shape, (1024, 1024))
    with pytest.raises(MobileSAMError, match="pass the image too"):
        segment_everything(embedding, sampler="boxes", decoder=decoder)
    with pytest.raises(MobileSAMError, match="not the one of the embedding"):
        segment_everything(embedding, sampler="boxes", image=image[:100], decoder=decoder)
    with pytest.raises(MobileSAMError, match="proposer"):
        segment_everything(image, sampler="boxes", proposer=lambda rgb: np.zeros((3, 5)), decoder=decoder)
    with pytest.raises(MobileSAMError, match="decoder returned"):
        segment_everything(image, decoder=lambda prompts, multi: (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3)))


# -- recipe weights: the contract with the real model --------------------------------


@pytest.fixture(scope="module")
def nuclei_reference():
    with np.load(DATA / "nuclei.npz") as ref:
        return ref["image"], ImageEmbedding(ref["embedding"], (512, 512), (1024, 1024))


def test_recipe_grid_from_an_embedding(recipe_model, nuclei_reference):
    image, embedding = nuclei_reference
    predictor = Predictor(recipe_model)
    segmenter = EverythingSegmenter(
        predictor=predictor, points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    labels = segmenter(embedding)
    assert_label_image(labels, (512, 512))
    assert labels.max() >= 1
    assert predictor.embedding is embedding  # set, not encoded again
    np.testing.assert_array_equal(segmenter(embedding), labels)  # stable across runs


def test_recipe_boxes_with_a_custom_proposer(recipe_model, nuclei_reference):
    image, embedding = nuclei_reference
    boxes = np.array([[10, 20, 100, 120], [200, 200, 260, 300], [300, 40, 420, 90]], dtype=float)
    labels = segment_everything(
        embedding,
        recipe_model,
        sampler="boxes",
        image=image,
        proposer=lambda rgb: boxes,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )
    assert_label_image(labels, (512, 512))
    assert 1 <= labels.max() <= 3


def test_recipe_rgb_image_is_encoded(recipe_model):
    with np.load(DATA / "histo.npz") as ref:
        rgb = np.ascontiguousarray(ref["image"][:96, :128])
    assert rgb.dtype == np.uint8 and rgb.shape == (96, 128, 3)
    steps = []
    labels = segment_everything(
        rgb,
        recipe_model,
        points_per_side=2,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        progress=lambda done, total: steps.append((done, total)),
    )
    assert_label_image(labels, (96, 128))
    assert steps[0] == (0, 3) and steps[-1] == (3, 3)  # encode, one batch, the labels


def test_recipe_grid_skipping_failing_masks_changes_nothing(recipe_model, nuclei_reference):
    """The model's own decoding skips the mask head of prompts failing pred_iou_thresh; same labels."""
    _, embedding = nuclei_reference
    predictor = Predictor(recipe_model)
    predictor.set_embedding(embedding)
    grid = point_grid(8) * 512
    _, iou = predictor.decode_low_res(
        check_prompts(grid[:, None], np.ones((len(grid), 1), dtype=int), None, None, (512, 512))
    )
    threshold = float(iou.flatten().quantile(0.7))  # some prompts pass, most are skipped
    params = dict(points_per_side=8, pred_iou_thresh=threshold, stability_score_thresh=0.0)
    skipping = EverythingSegmenter(predictor=predictor, **params)(embedding)
    # A decoder given from outside is called as is: every mask is computed, then filtered.
    computing = EverythingSegmenter(decoder=predictor.decode_low_res, **params)(embedding)
    assert skipping.max() >= 1
    np.testing.assert_array_equal(skipping, computing)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5000), (5000, 1), (1, 20000)])
@pytest.mark.parametrize("sampler", ["grid", "boxes"])
def test_recipe_degenerate_shapes(recipe_model, shape, sampler):
    """A line scan or a single pixel goes through every step (encoding, filters, NMS, full-size masks)."""
    image = np.random.default_rng(1).integers(0, 1000, shape).astype(np.uint16)
    labels = segment_everything(
        image, recipe_model, sampler=sampler, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    assert labels.shape == shape and labels.dtype == np.int32
    if shape != (1, 1):
        assert_label_image(labels, shape)
    if sampler == "grid" and shape != (1, 1):
        assert labels.max() >= 1


def test_a_huge_lazy_image_is_refused_before_it_is_read():
    from support.lazy import Unreadable

    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        segment_everything(Unreadable((20000, 20000)), decoder=lambda *_: None)


def test_recipe_batches_are_decoded_in_parts_with_a_chance_to_stop_between(recipe_model, nuclei_reference, monkeypatch):
    """On a CPU a batch is decoded in parts of STOP_EVERY prompts, a step between parts; the labels are the same."""
    import napari_mobilesam.segment.everything as everything

    image, embedding = nuclei_reference
    settings = {"points_per_side": 8, "points_per_batch": 64, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.5}
    runs = {}
    for stop_every in (64, 16):
        monkeypatch.setattr(everything, "STOP_EVERY", stop_every)
        steps = []
        segmenter = EverythingSegmenter(predictor=Predictor(recipe_model), **settings)
        runs[stop_every] = run_steps_recording(segmenter.steps(embedding), steps), steps
    (whole, whole_steps), (parts, part_steps) = runs[64], runs[16]
    np.testing.assert_array_equal(parts, whole)
    assert whole_steps.count((0, 2)) == 1 and part_steps.count((0, 2)) == 4  # one batch of 64 points: 4 parts
    assert part_steps[-1] == whole_steps[-1] == (2, 2)


def run_steps_recording(steps, recorded):
    from napari_mobilesam.segment.steps import run_steps

    return run_steps(steps, lambda done, total: recorded.append((done, total)))
