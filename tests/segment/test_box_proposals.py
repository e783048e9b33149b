"""The built-in box proposer: finds the nuclei of the StarDist test image, no weights needed."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from napari_mobilesam import MobileSAMError
from napari_mobilesam.engine.preprocessing import to_uint8_rgb
from napari_mobilesam.segment.box_proposals import MAX_BOXES, ForegroundBoxProposer, noise_level, propose_boxes
from napari_mobilesam.segment.nms import box_iou
from recipe import DATA


@pytest.fixture(scope="module")
def nuclei():
    image = to_uint8_rgb(tifffile.imread(DATA / "nuclei2d.tif"))
    labels = tifffile.imread(DATA / "nuclei2d_labels.tif")
    return image, labels


@pytest.fixture(scope="module")
def proposed(nuclei):
    return ForegroundBoxProposer()(nuclei[0])


def label_boxes(labels: np.ndarray) -> np.ndarray:
    found = [s for s in ndi.find_objects(labels) if s is not None]
    return np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in found], dtype=np.float32)


def test_boxes_are_well_formed(nuclei, proposed):
    height, width = nuclei[0].shape[:2]
    assert proposed.dtype == np.float32 and proposed.ndim == 2 and proposed.shape[1] == 4
    assert 0 < len(proposed) <= MAX_BOXES
    assert (proposed[:, 2] > proposed[:, 0]).all() and (proposed[:, 3] > proposed[:, 1]).all()
    assert (proposed >= 0).all() and (proposed[:, [0, 2]] <= width).all() and (proposed[:, [1, 3]] <= height).all()


def test_most_nuclei_get_a_matching_box(nuclei, proposed):
    truth = torch.from_numpy(label_boxes(nuclei[1]))
    best = box_iou(truth, torch.from_numpy(proposed)).max(dim=1).values
    assert (best >= 0.5).float().mean() >= 0.9


def test_dark_objects_on_bright_background_give_the_same_boxes(nuclei, proposed):
    inverted = 255 - nuclei[0]
    np.testing.assert_array_equal(ForegroundBoxProposer()(inverted), proposed)
    np.testing.assert_array_equal(ForegroundBoxProposer(polarity="dark")(inverted), proposed)


def test_grey_input_and_the_cap(nuclei, proposed):
    grey = nuclei[0][..., 0]
    np.testing.assert_array_equal(propose_boxes(grey), proposed)
    np.testing.assert_array_equal(propose_boxes(grey, max_boxes=10), proposed[:10])


def test_nothing_to_find():
    assert ForegroundBoxProposer()(np.full((64, 64, 3), 7, np.uint8)).shape == (0, 4)
    assert ForegroundBoxProposer(max_boxes=0)(np.eye(64, dtype=np.uint8)).shape == (0, 4)


def test_pure_noise_gives_no_boxes():
    """An empty slice (camera noise only) must not cost hundreds of prompts and spurious objects."""
    rng = np.random.default_rng(0)
    gaussian = np.clip(rng.normal(100, 10, (256, 256)), 0, 255).astype(np.uint8)
    poisson = rng.poisson(20, (256, 256)).astype(np.uint16)
    for noise in (gaussian, poisson, to_uint8_rgb(poisson)):
        assert ForegroundBoxProposer()(noise).shape == (0, 4)
    assert len(ForegroundBoxProposer(min_contrast=0)(gaussian)) > 100  # what noise gave before


def test_a_faint_object_on_noise_is_kept():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 10, (256, 256))
    yy, xx = np.mgrid[:256, :256]
    image[(yy - 100) ** 2 + (xx - 150) ** 2 < 10**2] += 25  # 2.5x the noise
    boxes = ForegroundBoxProposer()(np.clip(image, 0, 255).astype(np.uint8))
    assert 1 <= len(boxes) <= 3
    truth = torch.tensor([[140.0, 90.0, 161.0, 111.0]])
    assert float(box_iou(truth, torch.from_numpy(boxes)).max()) >= 0.7


def test_noise_level_is_the_noise_standard_deviation(nuclei):
    rng = np.random.default_rng(2)
    assert noise_level(rng.normal(0, 7, (300, 300))) == pytest.approx(7, rel=0.05)
    assert noise_level(np.full((8, 8), 3.0)) == 0.0
    # On the nuclei image the objects barely move it: its background's noise.
    grey = nuclei[0][..., 0].astype(float)
    background = grey[nuclei[1] == 0]
    assert noise_level(grey) < background.std()


def test_bad_settings_are_clear_errors():
    with pytest.raises(MobileSAMError, match="polarity"):
        ForegroundBoxProposer(polarity="up")
    with pytest.raises(MobileSAMError, match="block_size"):
        ForegroundBoxProposer(block_size=50)
    with pytest.raises(MobileSAMError, match="min_contrast"):
        ForegroundBoxProposer(min_contrast=-1)
    with pytest.raises(MobileSAMError, match="2D image"):
        ForegroundBoxProposer()(np.zeros((4, 8, 8, 3)))


def test_remembering_proposer_runs_once_per_image():
    from napari_mobilesam.segment.box_proposals import ForegroundBoxProposer, RememberingProposer

    image = np.zeros((64, 64), np.uint8)
    image[10:30, 10:30] = 200
    other = image.copy()
    other[40:60, 40:60] = 200
    proposer = RememberingProposer(ForegroundBoxProposer(), max_images=1)
    first = proposer(image)
    first[:] = -1  # callers may modify what they get: the remembered boxes are a copy
    again = proposer(image)
    assert proposer.calls == 1 and len(again) >= 1 and (again >= 0).all()
    np.testing.assert_array_equal(again, ForegroundBoxProposer()(image))
    assert len(proposer(other)) > len(again) and proposer.calls == 2
    proposer(image)  # evicted by max_images=1
    assert proposer.calls == 3
