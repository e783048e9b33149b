"""segment_everything: the pipeline end to end with an oracle decoder, and its contract with recipe weights.

The oracle stands in for MobileSAM's decoder through the ``decoder`` parameter:
it returns low-res logits made from the ground-truth labels of the StarDist
nuclei image (the object under each point, or best matching each box, plus
smaller and larger variants, with noise), so every other step of the real
pipeline runs as it does with the model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from napari_mobilesam import ImageEmbedding, MobileSAMError, Predictor
from napari_mobilesam.everything import EverythingParams, EverythingSegmenter, point_grid, segment_everything
from napari_mobilesam.label_image import paint_labels, remove_small_regions
from napari_mobilesam.nms import box_iou
from napari_mobilesam.preprocessing import preprocess_shape
from napari_mobilesam.prompts import Prompts, check_prompts
from recipe import DATA

LOW = 256


class OracleDecoder:
    """Low-res logits from ground-truth labels, with the contract of ``Predictor.decode_low_res``.

    Logits are a steep signed distance to an outline (positive inside) plus
    noise, sampled at the centres of the low-res pixels of the model frame
    (image resized so its longest side is 1024, then /4, padded to 256x256).

    A point prompt on an object gets three masks, small to large as SAM
    orders them: the object shrunk (predicted IoU 0.8), the object (0.95)
    and the object's clump -- the object with its touching neighbours, a
    little grown. The clump's predicted IoU is low for most objects, high
    but blurred (unstable) for every fifth, and high and sharp for another
    fifth, so that it reaches the label image under its members. A point on
    the background gets the background (low IoU) and two empty masks (high
    IoU). A box gets one mask: the object whose box matches it best.
    """

    slope = 24.0  # logits per pixel of signed distance
    far = -20.0
    noise = 0.5  # standard deviation of the logits' noise

    def __init__(self, labels: np.ndarray, seed: int = 0) -> None:
        self.labels = labels
        self.rng = np.random.default_rng(seed)
        height, width = labels.shape
        input_size = preprocess_shape(height, width)
        # Centre of low-res pixel i: model-input pixel 4i + 1.5 -> original pixel coordinate.
        self.centre_y = (4 * np.arange(LOW) + 2) * height / input_size[0] - 0.5
        self.centre_x = (4 * np.arange(LOW) + 2) * width / input_size[1] - 0.5
        self.ids = np.unique(labels)[1:]
        self.found = ndi.find_objects(labels)
        self.boxes = np.array([self._box([i]) for i in self.ids], dtype=np.float64)
        areas = np.bincount(labels.ravel())
        self.radius = {int(i): math.sqrt(areas[i] / math.pi) for i in self.ids}
        self.objects = {int(i): self._sample([int(i)]) for i in self.ids}
        self.clumps = {int(i): self._sample(self._members(int(i)), grow=2) for i in self.ids}
        valid = [math.ceil(n / 4) for n in input_size]
        rows = np.clip(np.round(self.centre_y[: valid[0]]).astype(int), 0, height - 1)
        cols = np.clip(np.round(self.centre_x[: valid[1]]).astype(int), 0, width - 1)
        self.background = np.full((LOW, LOW), self.far, dtype=np.float32)
        self.background[: valid[0], : valid[1]] = np.where(labels[np.ix_(rows, cols)] == 0, 10.0, -10.0)

    def _box(self, members: list[int]) -> list[int]:
        """``(x0, y0, x1, y1)`` around the objects ``members``."""
        found = [self.found[i - 1] for i in members]
        return [
            min(f[1].start for f in found),
            min(f[0].start for f in found),
            max(f[1].stop for f in found),
            max(f[0].stop for f in found),
        ]

    def _members(self, index: int) -> list[int]:
        """The object and the objects within 3 pixels of it."""
        x0, y0, x1, y1 = self._box([index])
        y0, x0 = max(y0 - 3, 0), max(x0 - 3, 0)
        window = self.labels[y0 : y1 + 3, x0 : x1 + 3]
        near = ndi.binary_dilation(window == index, iterations=3)
        return sorted({index, *(int(i) for i in np.unique(window[near]) if i)})

    def _sample(self, members: list[int], grow: int = 0):
        """Signed distance to the outline of ``members`` (grown by ``grow`` pixels) at the low-res pixels near it."""
        height, width = self.labels.shape
        margin = int(0.5 * max(self.radius[i] for i in members)) + 6 + grow
        x0, y0, x1, y1 = self._box(members)
        y0, y1, x0, x1 = max(y0 - margin, 0), min(y1 + margin, height), max(x0 - margin, 0), min(x1 + margin, width)
        mask = np.isin(self.labels[y0:y1, x0:x1], members)
        if grow:
            mask = ndi.binary_dilation(mask, iterations=grow)
        # Pixel centres lie half a pixel from the outline: +-0.5 on either side of it. Half of the
        # low-res centres fall on pixel edges, where the outline runs: the outline is moved out by
        # a tenth of a pixel so that they are not all undecided (a real decoder has no such ties).
        distance = np.where(mask, ndi.distance_transform_edt(mask), -ndi.distance_transform_edt(~mask))
        distance -= 0.5 * np.sign(distance) - 0.1
        iy = np.flatnonzero((self.centre_y >= y0) & (self.centre_y <= y1 - 1))
        ix = np.flatnonzero((self.centre_x >= x0) & (self.centre_x <= x1 - 1))
        grid = np.meshgrid(self.centre_y[iy] - y0, self.centre_x[ix] - x0, indexing="ij")
        sampled = ndi.map_coordinates(distance, grid, order=1, mode="nearest")
        return (slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1)), sampled

    def _paint(self, out: np.ndarray, window, shift: float = 0.0, slope: float | None = None) -> None:
        where, distance = window
        values = (slope or self.slope) * (distance + shift) + self.rng.normal(0.0, self.noise, distance.shape)
        out[where] = np.clip(values, self.far, -self.far)

    def _three(self, out: np.ndarray, index: int) -> list[float]:
        if index == 0:
            out[0] = self.background
            return [0.6, 0.9, 0.9]
        kind = index % 5
        self._paint(out[0], self.objects[index], shift=-0.3 * self.radius[index])
        self._paint(out[1], self.objects[index])
        self._paint(out[2], self.clumps[index], slope=0.5 if kind == 0 else None)
        return [0.8, 0.95, 0.92 if kind == 0 else 0.91 if kind == 1 else 0.75]

    def __call__(self, prompts: Prompts, multimask_output: bool = True):
        height, width = self.labels.shape
        count = prompts.count
        out = np.full((count, 3 if multimask_output else 1, LOW, LOW), self.far, dtype=np.float32)
        ious = []
        if prompts.point_coords is not None:
            assert multimask_output and prompts.boxes is None and (prompts.point_labels == 1).all()
            for k, (x, y) in enumerate(prompts.point_coords[:, 0]):
                row, col = min(max(round(y), 0), height - 1), min(max(round(x), 0), width - 1)
                ious.append(self._three(out[k], int(self.labels[row, col])))
        else:
            assert not multimask_output
            overlap = box_iou(torch.from_numpy(prompts.boxes), torch.from_numpy(self.boxes)).numpy()
            for k, row in enumerate(overlap):
                best = int(np.argmax(row))
                if row[best] >= 0.2:
                    self._paint(out[k, 0], self.objects[int(self.ids[best])])
                    ious.append([0.93])
                else:
                    ious.append([0.5])
        iou = np.array(ious) + self.rng.uniform(-0.01, 0.01, (count, 1))
        return torch.from_numpy(out), torch.from_numpy(iou).float()


def recovered_fraction(truth: np.ndarray, labels: np.ndarray, min_iou: float = 0.9) -> float:
    """Fraction of the true objects matched by a label with IoU >= ``min_iou``."""
    n_true, n_found = int(truth.max()) + 1, int(labels.max()) + 1
    pairs = truth.astype(np.int64).ravel() * n_found + labels.ravel()
    intersection = np.bincount(pairs, minlength=n_true * n_found).reshape(n_true, n_found)
    union = intersection.sum(1)[:, None] + intersection.sum(0)[None, :] - intersection
    iou = intersection / np.maximum(union, 1)
    ids = np.unique(truth)[1:]
    return float((iou[ids, 1:].max(axis=1) >= min_iou).mean()) if n_found > 1 else 0.0


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
