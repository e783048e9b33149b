"""The restructured inference forward gives the decoder module's maps, for both kinds and any embedding size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mobilesam import ImageEmbedding
from napari_mobilesam.model.instance_decoder import InstanceDecoder, build_instance_decoder
from napari_mobilesam.model.instance_decoder_inference import InstanceDecoderInference
from napari_mobilesam.model.winograd_conv import nnpack_usable
from napari_mobilesam.segment.instance_maps import instance_maps
from recipe import recipe_decoder_state_dict

# Embedding (h, w) -> output frame (16 h, 16 w): square, non-square, and a 48x80 frame.
FEATURE_SIZES = [(4, 4), (4, 6), (3, 5)]
WINOGRAD = [False, True] if nnpack_usable() else [False]


def _decoder(transposed: bool, seed: int) -> InstanceDecoder:
    if not transposed:
        return build_instance_decoder(recipe_decoder_state_dict(seed))
    torch.manual_seed(seed)
    decoder = InstanceDecoder(transposed=True)
    with torch.no_grad():  # biases and norm weights away from their defaults, so that every term counts
        for name, tensor in decoder.state_dict().items():
            if name.endswith(("bias", "running_mean")):
                tensor.normal_(0.0, 0.05)
            elif name.endswith(("norm.weight", "running_var")) or (tensor.dim() == 1 and "weight" in name):
                tensor.uniform_(0.5, 1.5)
    return decoder


def _features(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # An embedding-like input: channels with their own offsets and scales.
    offsets = torch.randn(1, 256, 1, 1, generator=generator)
    return offsets + torch.randn(1, 256, height, width, generator=generator) * (0.5 + torch.rand(1, 256, 1, 1))


@pytest.mark.parametrize(("height", "width"), FEATURE_SIZES)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("winograd", WINOGRAD)
def test_inference_equals_the_module(height, width, transposed, winograd):
    decoder = _decoder(transposed, seed=height + width)
    features = _features(height, width, seed=height * width)
    with torch.inference_mode():
        expected = decoder(features)
        maps = InstanceDecoderInference(decoder, winograd=winograd)(features)
    assert maps.shape == expected.shape == (1, 3, 16 * height, 16 * width)
    # Same arithmetic in another order: ~1e-6 apart with direct convs, ~1e-5 with Winograd's.
    np.testing.assert_allclose(maps.numpy(), expected.numpy(), atol=1e-4 if winograd else 2e-5, rtol=0)


@pytest.mark.parametrize("valid_size", [(37, 70), (64, 95), (1, 1)])
def test_only_the_valid_part_is_computed_and_it_is_the_modules(valid_size):
    decoder = _decoder(False, seed=3)
    features = _features(4, 6, seed=3)
    with torch.inference_mode():
        expected = decoder(features)[..., : valid_size[0], : valid_size[1]]
        maps = InstanceDecoderInference(decoder, winograd=False)(features, valid_size)
    assert maps.shape == expected.shape
    np.testing.assert_allclose(maps.numpy(), expected.numpy(), atol=2e-5, rtol=0)


def test_running_batch_statistics_are_followed():
    decoder = _decoder(False, seed=4)
    decoder.set_batch_norm_statistics("running")
    features = _features(4, 4, seed=4)
    runner = InstanceDecoderInference(decoder, winograd=False)
    with torch.inference_mode():
        np.testing.assert_allclose(runner(features).numpy(), decoder(features).numpy(), atol=2e-5, rtol=0)
        decoder.set_batch_norm_statistics("image")
        np.testing.assert_allclose(runner(features).numpy(), decoder(features).numpy(), atol=2e-5, rtol=0)


def test_derived_weights_follow_loaded_weights():
    decoder = _decoder(False, seed=5)
    runner = InstanceDecoderInference.for_decoder(decoder)
    assert InstanceDecoderInference.for_decoder(decoder) is runner
    features = _features(4, 4, seed=5)
    with torch.inference_mode():
        runner(features)  # caches the phase kernels of seed 5
        decoder.load_state_dict(recipe_decoder_state_dict(6))
        np.testing.assert_allclose(runner(features).numpy(), decoder(features).numpy(), atol=1e-4, rtol=0)


def test_one_image_at_a_time():
    with pytest.raises(ValueError, match="one image at a time"):
        InstanceDecoderInference(_decoder(False, seed=0))(torch.zeros(2, 256, 4, 4))


def test_instance_maps_run_the_fast_path_on_the_valid_part(monkeypatch):
    """``instance_maps`` hands an InstanceDecoder to the runner, asking for the image's part of the frame only."""
    calls = []

    def fake_run(runner, features, valid_size):
        calls.append((runner.decoder, tuple(features.shape), valid_size))
        return torch.arange(float(valid_size[1])).expand(1, 3, *valid_size) / valid_size[1]

    monkeypatch.setattr(InstanceDecoderInference, "__call__", fake_run)
    decoder = _decoder(False, seed=7)
    embedding = ImageEmbedding(np.zeros((256, 64, 64), np.float32), (300, 500), (614, 1024))
    maps = instance_maps(embedding, decoder)
    assert calls == [(decoder, (1, 256, 64, 64), (614, 1024))]
    ramp = (torch.arange(1024.0) / 1024).expand(1, 3, 614, 1024)
    expected = torch.nn.functional.interpolate(ramp, (300, 500), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(maps, expected[0].numpy(), atol=1e-6)
