"""Parity with the official MobileSAM implementation (fixtures in tests/data, see REFERENCE.md).

Tolerances are those of the reference README: encoder max |d| <= 1e-3; decoder
low-res logits <= 1e-3, IoU <= 1e-4, masks equal except where the logit is
within 1e-3 of 0; end to end from the uint8 image, mask IoU >= 0.98.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_mobilesam import ImageEmbedding
from napari_mobilesam.engine.preprocessing import resize_longest_side
from napari_mobilesam.model import build_mobile_sam
from recipe import DATA, recipe_state_dict, reference_shapes

CASES = json.loads((DATA / "cases.json").read_text())["images"]
IMAGES = sorted(CASES)
CASE_IDS = [(image, case) for image in IMAGES for case in CASES[image]["cases"]]


@pytest.fixture(scope="module")
def references():
    out = {}
    for name in IMAGES:
        with np.load(DATA / f"{name}.npz") as data:
            out[name] = {key: data[key] for key in data.files}
    return out


def predict_kwargs(case: dict, reference: dict) -> dict:
    kwargs = {
        "point_coords": case["points"],
        "point_labels": case["labels"],
        "box": case.get("box", case.get("boxes")),
        "multimask_output": case["multimask_output"],
    }
    if case["mask_input"] is not None:
        kwargs["mask_input"] = reference[case["mask_input"]]
    return kwargs


def test_state_dict_matches_official_keys_shapes_dtypes():
    state = build_mobile_sam().state_dict()
    expected = reference_shapes()
    assert list(state) == list(expected)  # same keys, same order as the official checkpoint
    for key, tensor in state.items():
        shape, dtype = expected[key]
        assert tuple(tensor.shape) == shape, key
        assert str(tensor.dtype).removeprefix("torch.") == dtype, key


@pytest.mark.parametrize("name", IMAGES)
def test_official_resize_is_reproduced_exactly(name, references):
    ref = references[name]
    resized = resize_longest_side(ref["image"])
    assert resized.shape[:2] == tuple(CASES[name]["input_size"])
    np.testing.assert_array_equal(resized, ref["resized"])


@pytest.mark.parametrize("name", IMAGES)
def test_encoder_parity(name, recipe_model, references):
    ref = references[name]
    x = torch.from_numpy(ref["resized"]).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        embedding = recipe_model.image_encoder(recipe_model.preprocess(x)).numpy()
    assert embedding.shape == (1, 256, 64, 64)
    assert np.abs(embedding - ref["embedding"]).max() <= 1e-3


@pytest.mark.parametrize(("name", "case_name"), CASE_IDS)
def test_decoder_parity(name, case_name, predictor, references):
    ref = references[name]
    info = CASES[name]
    predictor.set_embedding(ImageEmbedding(ref["embedding"], info["shape"][:2], info["input_size"]))
    kwargs = predict_kwargs(info["cases"][case_name], ref)
    logits, iou, low_res = predictor.predict(**kwargs, return_logits=True)
    masks, iou_bool, _ = predictor.predict(**kwargs)

    assert low_res.shape == ref[f"{case_name}.low_res_logits"].shape
    assert np.abs(low_res - ref[f"{case_name}.low_res_logits"]).max() <= 1e-3
    assert np.abs(iou - ref[f"{case_name}.iou_predictions"]).max() <= 1e-4
    expected = ref[f"{case_name}.masks"]
    assert masks.shape == expected.shape and masks.dtype == bool
    differ = masks != expected
    assert not np.any(differ & (np.abs(logits) > 1e-3))
    np.testing.assert_array_equal(masks, logits > 0)
    np.testing.assert_array_equal(iou, iou_bool)


@pytest.mark.parametrize("name", IMAGES)
def test_end_to_end_parity(name, predictor, references):
    ref = references[name]
    info = CASES[name]
    embedding = predictor.set_image(ref["image"])
    assert embedding.original_size == tuple(info["shape"][:2])
    assert embedding.input_size == tuple(info["input_size"])
    for case_name, case in info["cases"].items():
        masks, _, _ = predictor.predict(**predict_kwargs(case, ref))
        expected = ref[f"{case_name}.masks"].reshape(-1, *masks.shape[-2:])
        for ours, theirs in zip(masks.reshape(-1, *masks.shape[-2:]), expected, strict=True):
            union = np.logical_or(ours, theirs).sum()
            iou = np.logical_and(ours, theirs).sum() / union if union else 1.0
            assert iou >= 0.98, (case_name, iou)


def test_attention_bias_follows_weights_loaded_after_eval():
    """The official trap: a bias table cached at .eval() must not survive a later load."""
    model = build_mobile_sam()  # already in eval mode, with zero attention biases
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        model.image_encoder(x)  # would cache the zero table
    model.load_state_dict(recipe_state_dict(0))
    attention = model.image_encoder.layers[1].blocks[0].attn
    expected = attention.attention_biases[:, attention.attention_bias_idxs]
    torch.testing.assert_close(attention.bias_table(), expected, rtol=0, atol=0)
    with torch.no_grad():
        attention.attention_biases.add_(1.0)
    torch.testing.assert_close(attention.bias_table(), expected + 1.0, rtol=0, atol=0)


def test_batchnorm_folding_follows_weights():
    model = build_mobile_sam()
    conv = model.image_encoder.patch_embed.seq[0]
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        first = conv(x)
        conv.bn.running_var.fill_(4.0)
        second = conv(x)
        expected = conv.bn(conv.c(x))
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, expected, rtol=1e-5, atol=1e-5)


def test_upscaling_head_follows_weights():
    """The transposed convolutions' weights are cached as matrices; writing new weights must reach them."""
    decoder = build_mobile_sam().mask_decoder
    src = torch.randn(1, 16, 256)  # a 4x4 grid of image tokens
    conv1, norm, _, conv2, _ = decoder.output_upscaling

    def reference(x):  # the official layers, on the image layout
        image = x.transpose(1, 2).reshape(1, 256, 4, 4)
        return decoder.output_upscaling(image)

    with torch.inference_mode():
        first = decoder.upscale(src)
        conv2.weight.mul_(2.0)
        second = decoder.upscale(src)
        expected = reference(src)  # (1, 32, 16, 16)
    assert not torch.allclose(first, second)
    # Token (i, j)'s output pixel (4i + 2a + a', 4j + 2b + b') sits at row ((i*4 + j)*2 + a)*2 + b)*4 + a'*2 + b'.
    reordered = second.view(4, 4, 2, 2, 2, 2, 32).permute(6, 0, 2, 4, 1, 3, 5).reshape(32, 16, 16)
    torch.testing.assert_close(reordered, expected[0], rtol=1e-5, atol=1e-5)
