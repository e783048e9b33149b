"""AIS: the watershed against micro-sam's own labels, on oracle maps from ground truth, and its settings.

Oracle maps are the targets micro-sam trains its decoder on, made from the
StarDist ground truth (``instance_targets.training_targets``). They are exact,
so the Gaussian smoothing meant for a network's noisy maps only blurs them:
without it every nucleus comes back; with micro-sam's defaults 119 of the 125
nuclei of the 2D image do (the six lost are small or pressed against a
neighbour: smoothing the distances over their rims merges or drops their seeds).
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage.measure import label

from napari_mobilesam import MobileSAMError
from napari_mobilesam.segment.instance_params import MODEL_DEFAULTS, WatershedParams
from napari_mobilesam.segment.instance_watershed import gaussian_smoothing, remove_small_objects, watershed_from_maps
from recipe import DATA
from support.ais_reference import (
    AIS_CASES,
    AIS_IMAGES,
    assert_label_image,
    contingency_iou,
    recovered_fraction,
    reference,
)
from support.instance_targets import training_targets

NO_SMOOTHING = {"foreground_smoothing": 0.0, "distance_smoothing": 0.0}


@pytest.fixture(scope="module")
def nuclei2d():
    return label(tifffile.imread(DATA / "nuclei2d_labels.tif"), connectivity=2)


# -- micro-sam's labels from micro-sam's maps ----------------------------------------------


@pytest.mark.parametrize("name", AIS_IMAGES)
def test_watershed_of_micro_sams_maps_gives_its_labels(name):
    expected = reference(name)["labels"]
    labels = watershed_from_maps(reference(name)["maps"], **AIS_CASES["generate_defaults"])
    assert_label_image(labels, expected.shape, raster_order=False)  # AIS: by first seed pixel
    assert labels.max() == AIS_CASES["images"][name]["objects"]
    iou = contingency_iou(expected, labels)[1:, 1:]
    assert (iou >= 0.95).sum(axis=1).tolist() == [1] * iou.shape[0]  # one-to-one
    # Measured: every pixel and every id agree (both number objects by their first seed pixel).
    np.testing.assert_array_equal(labels, expected)


def test_gaussian_is_micro_sams():
    impulse = np.zeros((21, 21), np.float32)
    impulse[1, 10] = 1.0
    smoothed = gaussian_smoothing(impulse, 1.6)
    # Radius ceil(3 * 1.6) = 5: nothing beyond 5 px.
    assert smoothed[7:, 10].max() == 0.0 and smoothed[6, 10] > 0.0
    # Mirrored border (scipy's "mirror", bioimage-cpp's): row -1 is row 1, so row 0 gets the impulse twice.
    w = np.exp(-(np.arange(6) ** 2) / (2 * 1.6**2))
    assert smoothed[0, 10] / smoothed[2, 10] == pytest.approx(2 * w[1] / (w[1] + w[3]), rel=1e-5)
    assert smoothed.sum() > 1.0  # mass beyond the border comes back in
    assert smoothed.dtype == np.float32


# -- oracle maps from ground truth ---------------------------------------------------------


def test_oracle_maps_recover_every_2d_nucleus(nuclei2d):
    labels = watershed_from_maps(training_targets(nuclei2d), **NO_SMOOTHING)
    assert_label_image(labels, nuclei2d.shape, raster_order=False)
    assert recovered_fraction(nuclei2d, labels, 0.9) == 1.0  # measured: 125 of 125, lowest IoU 0.989


def test_oracle_maps_with_micro_sams_defaults(nuclei2d):
    labels = watershed_from_maps(training_targets(nuclei2d))
    assert recovered_fraction(nuclei2d, labels, 0.9) >= 0.95  # measured: 0.952 (see the module doc)


def test_oracle_maps_recover_the_3d_nuclei_slice_by_slice():
    stack = tifffile.imread(DATA / "nuclei3d_labels.tif")
    found = total = 0
    for plane in stack:
        truth = label(plane, connectivity=2)
        if truth.max() == 0:
            continue
        labels = watershed_from_maps(training_targets(truth), **NO_SMOOTHING)
        found += recovered_fraction(truth, labels, 0.9) * truth.max()
        total += truth.max()
    assert total > 300 and found / total >= 0.95  # measured: 366 of 366


def test_thresholds_decide_the_seeds(nuclei2d):
    maps = training_targets(nuclei2d)
    # A tiny centre threshold leaves one seed pixel per object; it still grows to the object.
    few = watershed_from_maps(maps, center_distance_threshold=0.05, **NO_SMOOTHING)
    assert recovered_fraction(nuclei2d, few, 0.9) >= 0.95
    # Foreground must be above the threshold (micro-sam's ">"): a map of exactly 0.5 holds nothing.
    halved = maps.copy()
    halved[0] *= 0.5
    assert watershed_from_maps(halved, **NO_SMOOTHING).max() == 0
    assert watershed_from_maps(halved, foreground_threshold=0.49, **NO_SMOOTHING).max() == nuclei2d.max()


def test_min_size_removes_small_objects_and_keeps_the_order(nuclei2d):
    maps = training_targets(nuclei2d)
    labels = watershed_from_maps(maps, min_size=200, **NO_SMOOTHING)
    assert_label_image(labels, nuclei2d.shape, raster_order=False)
    assert np.bincount(labels.ravel())[1:].min() >= 200
    everything = watershed_from_maps(maps, **NO_SMOOTHING)
    assert 0 < labels.max() < everything.max()
    kept = np.bincount(everything.ravel())[1:] >= 200
    assert labels.max() == kept.sum()
    np.testing.assert_array_equal(
        remove_small_objects(np.array([[1, 1, 2], [3, 3, 3]], np.int32), 2), [[1, 1, 0], [2, 2, 2]]
    )


def test_empty_maps_give_an_empty_label_image():
    maps = np.stack([np.zeros((8, 9)), np.ones((8, 9)), np.ones((8, 9))]).astype(np.float32)
    labels = watershed_from_maps(maps)
    assert labels.shape == (8, 9) and labels.dtype == np.int32 and labels.max() == 0


# -- settings -----------------------------------------------------------------------------


def test_defaults_are_micro_sams_generate_defaults():
    assert WatershedParams().__dict__ == AIS_CASES["generate_defaults"]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("center_distance_threshold", 0.0, r"center_distance_threshold must be in \(0, 1\]"),
        ("boundary_distance_threshold", 1.5, "boundary_distance_threshold must be in"),
        ("foreground_threshold", 1.0, r"foreground_threshold must be in \[0, 1\)"),
        ("foreground_smoothing", -1.0, "foreground_smoothing must be in"),
        ("distance_smoothing", float("nan"), "distance_smoothing must be a finite number"),
        ("min_size", 2.5, "min_size must be a whole number >= 0"),
        ("min_size", True, "min_size must be a whole number"),
        ("compactness", 1.0, "Unknown setting"),
    ],
)
def test_bad_settings_are_one_clear_error_each(setting, value, message):
    with pytest.raises(MobileSAMError, match=message):
        WatershedParams.from_kwargs(**{setting: value})


def test_bad_maps_and_mixed_settings_are_clear_errors():
    with pytest.raises(MobileSAMError, match=r"shape \(3, H, W\)"):
        watershed_from_maps(np.zeros((2, 5, 5)))
    with pytest.raises(MobileSAMError, match="NaN"):
        watershed_from_maps(np.full((3, 5, 5), np.nan))
    with pytest.raises(MobileSAMError, match="not both"):
        watershed_from_maps(np.zeros((3, 5, 5)), WatershedParams(), min_size=3)


def test_per_model_defaults_are_micro_sams_table():
    assert MODEL_DEFAULTS["vit_t_lm"] == {
        "center_distance_threshold": 0.5,
        "boundary_distance_threshold": 0.5,
        "distance_smoothing": 2.0,
        "min_size": 100,
    }
    em = WatershedParams.for_model("vit_t_em_organelles", min_size=0)
    assert (em.center_distance_threshold, em.distance_smoothing, em.min_size) == (0.4, 1.2, 0)
    assert em.foreground_smoothing == 1.0  # not in the table: generate()'s default
    with pytest.raises(MobileSAMError, match="No AIS settings"):
        WatershedParams.for_model("vit_b")
