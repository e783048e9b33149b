"""The predictor's contract: shapes, batching, stored embeddings and clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_mobilesam import ImageEmbedding, MobileSAMError, Predictor
from napari_mobilesam.engine.prompts import check_prompts
from recipe import DATA


@pytest.fixture(scope="module")
def nuclei_embedding():
    with np.load(DATA / "nuclei.npz") as ref:
        return ImageEmbedding(ref["embedding"], (512, 512), (1024, 1024))


@pytest.fixture
def ready(predictor, nuclei_embedding):
    predictor.set_embedding(nuclei_embedding)
    return predictor


def test_predict_before_image_is_an_error(predictor):
    with pytest.raises(MobileSAMError, match="set_image"):
        predictor.predict(point_coords=[[1, 1]], point_labels=[1])


def test_single_point_three_masks(ready):
    masks, iou, low_res = ready.predict(point_coords=[[200.0, 300.0]], point_labels=[1])
    assert masks.shape == (3, 512, 512) and masks.dtype == bool
    assert iou.shape == (3,) and iou.dtype == np.float32
    assert low_res.shape == (3, 256, 256) and low_res.dtype == np.float32


def test_single_mask_and_logits(ready):
    logits, iou, low_res = ready.predict(
        point_coords=[[200.0, 300.0]], point_labels=[1], multimask_output=False, return_logits=True
    )
    assert logits.shape == (1, 512, 512) and logits.dtype == np.float32
    masks, _, _ = ready.predict(point_coords=[[200.0, 300.0]], point_labels=[1], multimask_output=False)
    np.testing.assert_array_equal(masks, logits > 0)


def test_box_batch_has_a_leading_axis_and_equals_one_by_one(ready):
    boxes = np.array([[10, 20, 100, 120], [200, 200, 260, 300], [0, 0, 511, 511]], dtype=float)
    masks, iou, low_res = ready.predict(box=boxes, multimask_output=False)
    assert masks.shape == (3, 1, 512, 512) and iou.shape == (3, 1) and low_res.shape == (3, 1, 256, 256)
    for i, box in enumerate(boxes):
        single, single_iou, single_low = ready.predict(box=box, multimask_output=False)
        np.testing.assert_allclose(single_low, low_res[i], atol=1e-4)
        np.testing.assert_allclose(single_iou, iou[i], atol=1e-5)


def test_min_iou_skips_only_the_masks_of_failing_prompts(ready):
    points = np.array([[[x, y]] for x in (40.0, 200.0, 330.0, 470.0) for y in (60.0, 250.0, 420.0)])
    prompts = check_prompts(points, np.ones(points.shape[:2], dtype=int), None, None, (512, 512))
    full, iou = ready.decode_low_res(prompts, True)
    best = iou.max(dim=1).values.sort().values
    threshold = float(best[5] + best[6]) / 2  # half the prompts pass; clear of rounding (not one prompt's IoU)
    low_res, skipped_iou = ready.decode_low_res(prompts, True, min_iou=threshold)
    torch.testing.assert_close(skipped_iou, iou)
    passing = (iou > threshold).any(dim=1)
    assert 0 < int(passing.sum()) < len(points)
    torch.testing.assert_close(low_res[passing], full[passing], atol=1e-4, rtol=0)
    assert bool(torch.isneginf(low_res[~passing]).all())
    nothing, _ = ready.decode_low_res(prompts, True, min_iou=1.0)
    assert bool(torch.isneginf(nothing).all())


def test_decoding_leaves_the_shared_image_context_untouched(ready):
    """Prompts share one prepared image context; decoding must never write into it."""
    prompts = check_prompts([[120.0, 80.0]], [1], None, None, (512, 512))
    first, _ = ready.decode_low_res(prompts, True)
    context = ready._image_context()
    assert context.low_rank is not None  # the shared image in low rank, with its own prepared tensors
    saved = [t.clone() for t in _tensors(context)]
    for count in (1, 3, 9):  # one prompt, one chunk, several chunks
        batch = check_prompts(
            np.tile([[[120.0, 80.0]]], (count, 1, 1)), np.ones((count, 1), int), None, None, (512, 512)
        )
        again, _ = ready.decode_low_res(batch, True)
        torch.testing.assert_close(again, first.expand_as(again), atol=1e-4, rtol=0)
    for before, after in zip(saved, _tensors(context), strict=True):
        assert torch.equal(before, after)


def _tensors(value) -> list[torch.Tensor]:
    """Every tensor of a (nested) dataclass, in field order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if dataclasses.is_dataclass(value):
        return [t for field in dataclasses.fields(value) for t in _tensors(getattr(value, field.name))]
    return []


def test_mask_prompts_add_their_low_rank_part_to_the_bare_image_context(ready):
    """Mask prompts reuse the bare image's projections (prepare_with_masks) instead of projecting again."""
    model = ready.model
    masks = torch.from_numpy(np.random.default_rng(3).normal(0, 4, (3, 1, 256, 256)).astype(np.float32))
    with torch.inference_mode():
        dense = model.prompt_encoder.mask_downscaling(masks)
        direct = model.mask_decoder.prepare(ready.features, ready._image_pe(), dense)
        # The image-token path (the low-rank one adds the masks to its factors instead, tested apart).
        bare = dataclasses.replace(ready._image_context(bare=True), low_rank=None)
        low_rank = model.mask_decoder.prepare_with_masks(bare, model.prompt_encoder.mask_downscaling, masks)
    for name, expected in vars(direct).items():
        actual = getattr(low_rank, name)
        if name == "low_rank":  # one image side per mask: the blocks run on its image tokens
            assert expected is None and actual is None
            continue
        if name == "dense_in_keys":  # the masks' addition is in the image tokens
            assert expected and actual
            continue
        if expected is None:  # the upscaling head's shares: one image side (+ the masks' low-rank part)
            assert name in ("upscale_base", "dense_features", "dense_map") and actual is not None, name
            continue
        assert actual.shape[1:] == expected.shape[1:], name
        torch.testing.assert_close(actual.expand_as(expected), expected, atol=2e-5, rtol=1e-5)
    # Masks alone, batched (in low rank, the predictor's path), the same as decoding them one by one.
    together, iou, _ = ready.predict(mask_input=masks.numpy(), multimask_output=False, return_logits=True)
    assert together.shape == (3, 1, 512, 512) and iou.shape == (3, 1)
    for index in range(3):
        alone, _, _ = ready.predict(mask_input=masks[index].numpy(), multimask_output=False, return_logits=True)
        np.testing.assert_allclose(together[index], alone, atol=1e-4)


def test_batched_points_with_boxes(ready):
    points = np.array([[[50.0, 60.0]], [[230.0, 250.0]]])
    labels = np.array([[1], [0]])
    boxes = np.array([[10, 20, 100, 120], [200, 200, 260, 300]], dtype=float)
    masks, iou, _ = ready.predict(point_coords=points, point_labels=labels, box=boxes)
    assert masks.shape == (2, 3, 512, 512) and iou.shape == (2, 3)


def test_mask_input_refines(ready):
    _, iou, low_res = ready.predict(point_coords=[[200.0, 300.0]], point_labels=[1])
    best = low_res[np.argmax(iou)][None]
    masks, _, _ = ready.predict(
        point_coords=[[200.0, 300.0]], point_labels=[1], mask_input=best, multimask_output=False
    )
    assert masks.shape == (1, 512, 512)
    masks, _, _ = ready.predict(mask_input=best, multimask_output=False)  # a mask alone is a prompt
    assert masks.shape == (1, 512, 512)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "No prompt"),
        ({"point_coords": [[1.0, 2.0]]}, "point_labels"),
        ({"point_labels": [1]}, "point_labels"),
        ({"point_coords": [[1.0, 2.0], [3.0, 4.0]], "point_labels": [1]}, "one label per point"),
        ({"point_coords": [[np.nan, 2.0]], "point_labels": [1]}, "NaN"),
        ({"point_coords": [1.0, 2.0], "point_labels": [1]}, r"shape \(K, 2\)"),
        ({"point_coords": [[1.0, 2.0]], "point_labels": [2]}, "1 \\(foreground\\) or 0"),
        ({"point_coords": [[600.0, 2.0]], "point_labels": [1]}, "outside"),
        ({"point_coords": [[-3.0, 2.0]], "point_labels": [1]}, "outside"),
        ({"box": [50.0, 10.0, 20.0, 40.0]}, "x1 < x0"),
        (
            {"box": [600.0, 10.0, 700.0, 40.0]},
            r"Box \(x0=600, y0=10, x1=700, y1=40\) lies entirely outside the 512x512",
        ),
        ({"box": [[10, 10, 40, 40], [-90, -90, -10, -10]]}, "entirely outside"),
        ({"box": [1.0, 2.0, 3.0]}, r"shape \(4,\)"),
        ({"box": [[1, 2, 3, 4], [1, 2, 3, 4]], "point_coords": [[1.0, 1.0]], "point_labels": [1]}, "disagree"),
        ({"mask_input": np.zeros((64, 64))}, "256"),
        ({"point_coords": [["a", "b"]], "point_labels": [1]}, "numbers"),
    ],
)
def test_bad_prompts_are_clear_errors(ready, kwargs, message):
    with pytest.raises(MobileSAMError, match=message):
        ready.predict(**kwargs)


def test_points_on_the_border_are_accepted(ready):
    masks, _, _ = ready.predict(point_coords=[[0.0, 0.0], [511.0, 511.0], [-0.5, 511.5]], point_labels=[1, 0, 1])
    assert masks.shape == (3, 512, 512)


def test_embedding_roundtrip_without_pickle(tmp_path, nuclei_embedding):
    path = nuclei_embedding.save(tmp_path / "emb.npz")
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"features", "original_size", "input_size"}
    loaded = ImageEmbedding.load(path)
    np.testing.assert_array_equal(loaded.features, nuclei_embedding.features)
    assert loaded.original_size == (512, 512) and loaded.input_size == (1024, 1024)
    assert loaded.nbytes == 256 * 64 * 64 * 4


def test_bad_embeddings(tmp_path, predictor):
    with pytest.raises(MobileSAMError, match="shape"):
        ImageEmbedding(np.zeros((256, 32, 32), np.float32), (10, 10), (1024, 1024))
    with pytest.raises(MobileSAMError, match="does not match"):
        predictor.set_embedding(ImageEmbedding(np.zeros((256, 64, 64), np.float32), (512, 512), (1000, 1000)))
    with pytest.raises(MobileSAMError):
        predictor.set_embedding(np.zeros((256, 64, 64)))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MobileSAMError, match="encode again"):
        ImageEmbedding.load(tmp_path / "junk.npz")
    with pytest.raises(MobileSAMError, match="missing.npz does not exist; give the path of an .npz") as error:
        ImageEmbedding.load(tmp_path / "missing.npz")
    assert "Delete" not in str(error.value)


def test_set_image_grey_uint16_tall_image(recipe_model):
    """Taller than wide, 16-bit grey: encoded once, masks at the original size."""
    predictor = Predictor(recipe_model)
    image = np.random.default_rng(0).integers(0, 4000, (700, 300), dtype=np.uint16)
    embedding = predictor.set_image(image)
    assert embedding.original_size == (700, 300) and embedding.input_size == (1024, 439)
    assert embedding.features.shape == (256, 64, 64) and embedding.features.dtype == np.float32
    masks, _, _ = predictor.predict(point_coords=[[150.0, 650.0]], point_labels=[1])
    assert masks.shape == (3, 700, 300)
    # set_embedding of what set_image returned gives the same answer as set_image did
    again = Predictor(recipe_model)
    again.set_embedding(embedding)
    masks2, _, _ = again.predict(point_coords=[[150.0, 650.0]], point_labels=[1])
    np.testing.assert_array_equal(masks, masks2)


def test_tiny_and_large_images(recipe_model):
    predictor = Predictor(recipe_model)
    predictor.set_image(np.ones((1, 1), np.float32))
    masks, _, _ = predictor.predict(point_coords=[[0.0, 0.0]], point_labels=[1])
    assert masks.shape == (3, 1, 1)
    large = np.zeros((5000, 3000), np.uint8)
    large[2000:2600, 1000:1800] = 200
    predictor.set_image(large)
    masks, _, low_res = predictor.predict(box=[1000, 2000, 1800, 2600], multimask_output=False)
    assert masks.shape == (1, 5000, 3000) and low_res.shape == (1, 256, 256)
    assert predictor.input_size == (1024, 614)


def test_boxes_partly_outside_are_still_decoded(ready):
    masks, _, _ = ready.predict(box=[400.0, 400.0, 700.0, 700.0], multimask_output=False)
    assert masks.shape == (1, 512, 512)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5000), (5000, 1), (1, 20000), (20000, 1), (2, 3)])
def test_degenerate_shapes_are_segmented(recipe_model, shape):
    """Line scans and single pixels: resized to at least 1 px a side, decoded back to their own shape."""
    predictor = Predictor(recipe_model)
    image = np.random.default_rng(0).integers(0, 1000, shape).astype(np.uint16)
    predictor.set_image(image)
    assert min(predictor.input_size) >= 1 and max(predictor.input_size) == 1024
    height, width = shape
    masks, _, _ = predictor.predict(point_coords=[[width - 1, height - 1]], point_labels=[1])
    assert masks.shape == (3, *shape)
    masks, _, _ = predictor.predict(box=[0, 0, width - 1, height - 1], multimask_output=False)
    assert masks.shape == (1, *shape)


def test_a_huge_lazy_image_is_refused_before_it_is_read(recipe_model):
    from support.lazy import Unreadable

    predictor = Predictor(recipe_model)
    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        predictor.set_image(Unreadable((20000, 20000)))
    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        predictor.embed(Unreadable((20000, 20000, 3), np.uint8))
