"""Grouping prompts into objects and decoding them (no viewer)."""

from __future__ import annotations

import numpy as np

from napari_mobilesam.interactive.decoding import decode_objects
from napari_mobilesam.interactive.prompt_objects import decode_groups, objects_from_prompts


def test_points_alone_are_one_object_and_need_a_positive_point():
    objects = objects_from_prompts([[1, 2], [3, 4]], [True, False], np.zeros((0, 4)))
    assert len(objects) == 1 and objects[0].box is None
    np.testing.assert_array_equal(objects[0].point_labels, [1, 0])
    assert objects_from_prompts([[1, 2]], [False], np.zeros((0, 4))) == []


def test_points_inside_a_box_belong_to_it_and_free_points_form_another_object():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    points = [[5, 5], [25, 26], [50, 50], [60, 60]]
    objects = objects_from_prompts(points, [True, False, True, False], boxes)
    assert len(objects) == 3
    np.testing.assert_array_equal(objects[0].point_coords, [[5, 5]])
    np.testing.assert_array_equal(objects[1].point_labels, [0])
    assert objects[2].box is None and objects[2].n_points == 2
    assert decode_groups(objects) == [[0, 1], [2]]


def test_decode_one_object_gives_three_candidates_and_cycles(predictor):
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (40, 60), dtype=np.uint8))
    objects = objects_from_prompts([[30, 20]], [True], np.zeros((0, 4)))
    decoded = decode_objects(predictor, objects)
    assert decoded.candidates.shape == (1, 3, 40, 60)
    assert decoded.chosen[0] == np.argmax(decoded.iou[0])
    assert decoded.masks.shape == (1, 40, 60) and decoded.chosen_low_res.shape == (1, 1, 256, 256)
    assert decoded.cycled().chosen[0] == (decoded.chosen[0] + 1) % 3
    refined = decode_objects(predictor, objects, mask_input=decoded.chosen_low_res[0])
    assert refined.candidates.shape == (1, 3, 40, 60)


def test_decode_boxes_in_batches(predictor):
    predictor.set_image(np.random.default_rng(1).integers(0, 255, (40, 60), dtype=np.uint8))
    boxes = np.array([[0, 0, 20, 20], [30, 10, 50, 30], [5, 25, 15, 35]], dtype=float)
    objects = objects_from_prompts([[40, 20]], [True], boxes)
    decoded = decode_objects(predictor, objects)
    assert decoded.candidates.shape == (3, 1, 40, 60)
    labels = decoded.label_image()
    assert labels.shape == (40, 60) and set(np.unique(labels)) <= {0, 1, 2, 3}


def test_decoded_masks_match_the_predictor(predictor):
    image = np.random.default_rng(2).integers(0, 255, (50, 70), dtype=np.uint8)
    predictor.set_image(image)
    objects = objects_from_prompts([[30, 20], [10, 12]], [True, False], np.zeros((0, 4)))
    decoded = decode_objects(predictor, objects)
    masks, iou, low_res = predictor.predict(point_coords=[[30, 20], [10, 12]], point_labels=[1, 0])
    np.testing.assert_allclose(decoded.iou[0], iou, atol=1e-5)
    np.testing.assert_allclose(decoded.low_res[0], low_res, atol=1e-4)
    assert (decoded.candidates[0] != masks).mean() < 1e-3  # float rounding at the threshold only
