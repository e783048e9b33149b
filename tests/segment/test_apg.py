"""APG: prompts from the decoder's maps, decoded by SAM -- with an oracle SAM on ground truth, and the recipe model.

The oracle SAM stands in through ``decoder=`` (the contract of
``Predictor.decode_low_res``): for a point prompt it returns the ground-truth
object under the point, for a box prompt the object whose box matches best,
as low-res logits (a steep signed distance to the object's outline, sampled at
the centres of the 256x256 low-res pixels). The maps are the oracle maps of
``instance_targets``. Every other step runs as with the model.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi
from skimage.measure import label

from napari_mobilesam import ImageEmbedding, MobileSAMError, Predictor
from napari_mobilesam.engine.preprocessing import preprocess_shape
from napari_mobilesam.segment.apg import _Masks, mask_nms, paint_largest_first, segment_apg
from napari_mobilesam.segment.apg_prompts import extended_boxes, point_prompts
from napari_mobilesam.segment.instance_params import APGParams
from recipe import DATA
from support.ais_reference import assert_label_image, our_embedding_and_maps, recovered_fraction
from support.instance_targets import training_targets

LOW = 256


class ObjectOracle:
    """Ground-truth objects as low-res logits for point and box prompts (see the module doc).

    With ``multimask_output`` a prompt gets the object shrunk by 2 px, the
    object, and it grown by 3 px, with predicted IoU 0.8, 0.95, 0.85.
    """

    slope, far = 20.0, -20.0

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        height, width = labels.shape
        input_height, input_width = preprocess_shape(height, width)
        # Low-res pixel i spans model-input pixels 4i..4i+3: its centre in original pixel coordinates.
        self.rows = (4 * np.arange(LOW) + 2) * height / input_height - 0.5
        self.cols = (4 * np.arange(LOW) + 2) * width / input_width - 0.5
        self.windows = ndi.find_objects(labels)
        self.boxes = np.array([[w[1].start, w[0].start, w[1].stop, w[0].stop] for w in self.windows], float)
        self.prompt_kinds: list[str] = []

    def logits(self, index: int, grow: float = 0.0) -> np.ndarray:
        out = np.full((LOW, LOW), self.far, dtype=np.float32)
        if index == 0:
            return out
        height, width = self.labels.shape
        rows, cols = self.windows[index - 1]
        y0, y1 = max(rows.start - 6, 0), min(rows.stop + 6, height)
        x0, x1 = max(cols.start - 6, 0), min(cols.stop + 6, width)
        mask = self.labels[y0:y1, x0:x1] == index
        # Pixel centres inside are >= +0.5 from the outline, outside <= -0.5.
        signed = np.where(mask, ndi.distance_transform_edt(mask), -ndi.distance_transform_edt(~mask))
        signed = signed - 0.5 * np.sign(signed) + grow
        # Up to the window's outer pixel edge: at the image border, centres lie up to half a pixel beyond its last pixel.
        iy = np.flatnonzero((self.rows >= y0 - 0.5) & (self.rows <= y1 - 0.5))
        ix = np.flatnonzero((self.cols >= x0 - 0.5) & (self.cols <= x1 - 0.5))
        grid = np.meshgrid(self.rows[iy] - y0, self.cols[ix] - x0, indexing="ij")
        sampled = ndi.map_coordinates(signed, grid, order=1, mode="nearest")
        out[np.ix_(iy, ix)] = np.clip(self.slope * sampled, self.far, -self.far)
        return out

    def __call__(self, prompts, multimask_output: bool):
        height, width = self.labels.shape
        if prompts.boxes is not None:
            self.prompt_kinds.append("boxes")
            objects = [self._best_box(box) for box in prompts.boxes]
        else:
            self.prompt_kinds.append("points")
            objects = [
                int(self.labels[min(max(round(y), 0), height - 1), min(max(round(x), 0), width - 1)])
                for x, y in prompts.point_coords[:, 0]
            ]
        if not multimask_output:
            logits = np.stack([self.logits(index)[None] for index in objects])
            return torch.from_numpy(logits), torch.full((len(objects), 1), 0.95)
        logits = np.stack([np.stack([self.logits(i, -2.0), self.logits(i), self.logits(i, 3.0)]) for i in objects])
        return torch.from_numpy(logits), torch.tensor([[0.8, 0.95, 0.85]] * len(objects))

    def _best_box(self, box: np.ndarray) -> int:
        top_left = np.maximum(self.boxes[:, :2], box[:2])
        bottom_right = np.minimum(self.boxes[:, 2:], box[2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        areas = np.prod(self.boxes[:, 2:] - self.boxes[:, :2], axis=1)
        iou = inter / (areas + np.prod(box[2:] - box[:2]) - inter)
        return int(np.argmax(iou)) + 1 if iou.max() >= 0.5 else 0


def blank_embedding(shape: tuple[int, int]) -> ImageEmbedding:
    """An embedding that only carries the sizes (the oracle needs no features)."""
    return ImageEmbedding(np.zeros((256, 64, 64), np.float32), shape, preprocess_shape(*shape))


@pytest.fixture(scope="module")
def nuclei2d():
    truth = label(tifffile.imread(DATA / "nuclei2d_labels.tif"), connectivity=2)
    return truth, training_targets(truth)


# -- with an oracle SAM ----------------------------------------------------------------------


def test_oracle_apg_recovers_the_nuclei(nuclei2d):
    truth, maps = nuclei2d
    oracle = ObjectOracle(truth)
    steps = []
    labels = segment_apg(
        blank_embedding(truth.shape), maps, decoder=oracle, progress=lambda done, total: steps.append((done, total))
    )
    assert_label_image(labels, truth.shape)
    assert recovered_fraction(truth, labels, 0.9) >= 0.95
    assert oracle.prompt_kinds == ["points"] * 4  # 125 seeds in batches of 32
    assert steps[0] == (0, 5) and steps[-1] == (5, 5)


def test_oracle_apg_with_multimasking_and_box_refinement(nuclei2d):
    truth, maps = nuclei2d
    oracle = ObjectOracle(truth)
    labels = segment_apg(
        blank_embedding(truth.shape), maps, decoder=oracle, multimasking=True, refine_with_box_prompts=True
    )
    assert recovered_fraction(truth, labels, 0.9) >= 0.95
    assert oracle.prompt_kinds == ["points"] * 4 + ["boxes"] * 4


def test_oracle_apg_on_the_3d_nuclei_slices():
    stack = tifffile.imread(DATA / "nuclei3d_labels.tif")
    found = total = 0
    for plane in stack:
        truth = label(plane, connectivity=2)
        big = np.isin(truth, np.flatnonzero(np.bincount(truth.ravel()) > 25))  # APG's min_size drops the rest
        truth = label(truth * big, connectivity=2)
        if truth.max() == 0:
            continue
        labels = segment_apg(blank_embedding(truth.shape), training_targets(truth), decoder=ObjectOracle(truth))
        found += recovered_fraction(truth, labels, 0.9) * truth.max()
        total += truth.max()
    assert total > 50 and found / total >= 0.95


def test_no_seed_means_no_decoding():
    maps = np.stack([np.zeros((40, 50)), np.ones((40, 50)), np.ones((40, 50))]).astype(np.float32)

    def never(prompts, multimask_output):
        raise AssertionError("decoded without a prompt")

    labels = segment_apg(blank_embedding((40, 50)), maps, decoder=never)
    assert labels.shape == (40, 50) and labels.dtype == np.int32 and labels.max() == 0


# -- the prompts -------------------------------------------------------------------------------


def test_point_is_the_most_central_seed_pixel():
    maps = np.ones((3, 30, 40), np.float32)
    maps[1:, 5:16, 10:17] = 0.0  # one seed object: rows 5..15, columns 10..16
    maps[1:, 20:23, 0:5] = 0.0  # one at the left border: the border counts as outside
    maps[0, 25:, :] = 0.2  # seeds on the background do not count
    maps[1:, 26, 30] = 0.0
    points = point_prompts(maps, 0.5, 0.5, 0.5)
    np.testing.assert_array_equal(points, [[13, 8], [2, 21]])  # (x, y); ties: first in raster order


def test_box_prompts_are_extended_by_one_percent_and_clipped():
    # Boxes with exclusive ends; micro-sam works with inclusive ones: x1 = 109, width 99.
    boxes = extended_boxes(np.array([[10, 20, 110, 70], [0, 0, 300, 100], [0, 0, 0, 0]]), (100, 300))
    np.testing.assert_allclose(boxes[0], [10 - 0.99, 20 - 0.49, 109 + 0.99, 69 + 0.49])
    # Clipped to the width for x and the height for y (micro-sam swaps these; the same for square images).
    np.testing.assert_allclose(boxes[1], [0, 0, 300, 99 + 0.99])
    np.testing.assert_allclose(boxes[2], [0, 0, 0, 0])


# -- NMS and the label image -------------------------------------------------------------------


def masks_of(shape, *masks_and_scores) -> _Masks:
    found = _Masks()
    for mask, score in masks_and_scores:
        found.add(torch.from_numpy(np.where(mask, 5.0, -5.0)[None]).float(), torch.tensor([score]), 0.0)
    return found


def test_nms_keeps_the_better_of_two_near_copies_and_can_use_the_smaller_area():
    shape = (40, 40)
    square = np.zeros(shape, bool)
    square[5:25, 5:25] = True
    nearly = square.copy()
    nearly[24, 5:25] = False  # IoU 0.95
    inner = np.zeros(shape, bool)
    inner[8:14, 8:14] = True
    found = masks_of(shape, (nearly, 0.9), (square, 0.95), (inner, 0.8))
    assert mask_nms(found, [0, 1, 2], 0.9, intersection_over_min=False) == [1, 2]
    assert mask_nms(found, [0, 1, 2], 0.9, intersection_over_min=True) == [1]


def test_largest_mask_wins_overlaps_and_pieces_become_objects():
    shape = (30, 30)
    big = np.zeros(shape, bool)
    big[0:20, 0:20] = True
    small = np.zeros(shape, bool)
    small[15:25, 15:25] = True  # its corner under the big mask goes to the big one
    split = np.zeros(shape, bool)
    split[26:30, 0:10] = True
    split[26:30, 20:30] = True  # two pieces: two objects
    speck = np.zeros(shape, bool)
    speck[0:2, 25:27] = True
    found = masks_of(shape, (small, 0.9), (big, 0.5), (split, 0.7), (speck, 0.7))
    labels = paint_largest_first(shape, found, [0, 1, 2, 3], min_size=5)
    assert_label_image(labels, shape)
    assert labels.max() == 4  # big, small, two pieces of split; the 4-pixel speck < min_size
    assert (labels[big] == labels[0, 0]).all()
    assert np.count_nonzero(labels == labels[24, 24]) == 100 - 25
    assert labels[27, 5] != labels[27, 25]


# -- the recipe model, end to end ---------------------------------------------------------------


def test_recipe_apg_end_to_end(recipe_model):
    embedding, maps = our_embedding_and_maps("histo", recipe_model)
    predictor = Predictor(recipe_model)
    # Random weights draw speckled masks: with min_size=0 every speck is an object of its own (thousands).
    specks = segment_apg(embedding, maps, predictor, min_size=0, nms_threshold=0.5)
    assert_label_image(specks, embedding.original_size)
    assert predictor.embedding is embedding
    params = APGParams(multimasking=True, refine_with_box_prompts=True)
    labels = segment_apg(embedding, maps, predictor, params=params)
    assert_label_image(labels, embedding.original_size)
    assert labels.max() >= 1  # measured: one object of ~111,000 pixels
    np.testing.assert_array_equal(labels, segment_apg(embedding, maps, predictor, params=params))


# -- settings and errors ------------------------------------------------------------------------


def test_defaults_are_micro_sams():
    params = APGParams()
    assert (params.min_size, params.nms_threshold, params.batch_size, params.multimasking) == (25, 0.9, 32, False)
    assert params.logit_threshold == 0.0 and not params.refine_with_box_prompts


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("nms_threshold", 1.5, r"nms_threshold must be in \[0, 1\]"),
        ("batch_size", 0, "batch_size must be a whole number >= 1"),
        ("min_size", -1, "min_size must be a whole number >= 0"),
        ("multimasking", "yes", "multimasking must be True or False"),
        ("mask_threshold", "auto", "local Otsu"),
        ("mask_threshold", float("inf"), "mask_threshold must be a finite number"),
        ("center_distance_threshold", 0.0, "center_distance_threshold must be in"),
        ("points_per_side", 32, "Unknown setting"),
    ],
)
def test_bad_settings_are_one_clear_error_each(setting, value, message):
    with pytest.raises(MobileSAMError, match=message):
        APGParams.from_kwargs(**{setting: value})


def test_bad_calls_are_clear_errors(nuclei2d):
    truth, maps = nuclei2d
    embedding = blank_embedding(truth.shape)
    with pytest.raises(MobileSAMError, match="exactly one"):
        segment_apg(embedding, maps)
    with pytest.raises(MobileSAMError, match="not of the embedding's image"):
        segment_apg(blank_embedding((100, 100)), maps, decoder=ObjectOracle(truth))
    with pytest.raises(MobileSAMError, match="contract of Predictor.decode_low_res"):
        segment_apg(embedding, maps, decoder=lambda prompts, multi: (torch.zeros(1, 1, 64, 64), torch.zeros(1, 1)))
    with pytest.raises(MobileSAMError, match="not both"):
        segment_apg(embedding, maps, decoder=ObjectOracle(truth), params=APGParams(), min_size=3)
