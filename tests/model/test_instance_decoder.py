"""micro-sam's instance decoder: its keys, strict loading, and parity with micro-sam 1.8.14's own maps.

Parity (tests/data/REFERENCE.md, section AIS): recipe SAM weights and the recipe
decoder; our embedding of the fixture image as micro-sam feeds it to the encoder
(``microsam_rgb``), our maps within 1e-3 of micro-sam's, and our watershed of
our maps gives micro-sam's objects (one-to-one, IoU >= 0.95).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_mobilesam import MobileSAMError
from napari_mobilesam.model.instance_decoder import (
    InstanceDecoder,
    Upsampler,
    build_instance_decoder,
    uses_transposed_convolutions,
)
from napari_mobilesam.segment.instance_maps import instance_maps, microsam_rgb
from napari_mobilesam.segment.instance_watershed import watershed_from_maps
from recipe import decoder_shapes, recipe_decoder_state_dict
from support.ais_reference import AIS_CASES, AIS_IMAGES, one_to_one, our_embedding_and_maps, reference

# -- keys and loading ------------------------------------------------------------------


def test_state_dict_has_exactly_micro_sams_decoder_keys_and_shapes():
    state = InstanceDecoder().state_dict()
    expected = decoder_shapes()
    assert len(expected) == 66
    assert sorted(state) == sorted(expected)
    for key, tensor in state.items():
        assert tuple(tensor.shape) == expected[key], key


def test_transposed_kind_has_micro_sams_keys_and_is_told_apart():
    state = InstanceDecoder(transposed=True).state_dict()
    samplers = [key for key in state if key.startswith("decoder.samplers")]
    # torch_em's SingleDeconv2DBlock: a ConvTranspose2d under "block", weight (in, out, 2, 2).
    assert samplers == [f"decoder.samplers.{i}.block.{p}" for i in range(3) for p in ("weight", "bias")]
    assert tuple(state["decoder.samplers.0.block.weight"].shape) == (512, 256, 2, 2)
    assert tuple(state["deconv_out.block.weight"].shape) == (64, 64, 2, 2)
    assert tuple(state["deconv1.block.0.block.weight"].shape) == (256, 512, 2, 2)
    assert uses_transposed_convolutions(state)
    assert not uses_transposed_convolutions(recipe_decoder_state_dict(0))
    loaded = build_instance_decoder(state)
    assert loaded.transposed and not build_instance_decoder(recipe_decoder_state_dict(0)).transposed
    with torch.inference_mode():
        out = loaded(torch.randn(1, 256, 8, 8))  # any size: x16 out (64 -> 1024 for an embedding)
    assert out.shape == (1, 3, 128, 128) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_builder_loads_every_value_strictly():
    state = recipe_decoder_state_dict(0)
    decoder = build_instance_decoder(state)
    loaded = decoder.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    assert not decoder.training


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.pop("out_conv.weight"), ["out_conv.weight"]),
        (lambda s: s.update({"encoder.patch_embed.proj.weight": torch.zeros(1)}), ["encoder.patch_embed.proj.weight"]),
        (
            lambda s: s.update({"base.block.1.weight": torch.zeros(512, 256, 1, 1)}),
            ["base.block.1.weight", "(512, 256, 3, 3)"],
        ),
        (lambda s: [s.pop(k) for k in sorted(s)[:7]], ["7 missing", "base.block.1.bias", "and 2 more"]),
    ],
    ids=["missing", "unexpected", "wrong-shape", "many-missing"],
)
def test_a_wrong_state_dict_is_one_clear_error_naming_keys(change, named):
    state = recipe_decoder_state_dict(0)
    change(state)
    with pytest.raises(MobileSAMError, match="not a micro-sam instance decoder") as error:
        build_instance_decoder(state)
    for text in named:
        assert text in str(error.value)


def test_not_a_state_dict_is_a_clear_error():
    with pytest.raises(MobileSAMError, match="decoder_state"):
        build_instance_decoder([1, 2, 3])
    with pytest.raises(MobileSAMError, match="batch_norm_statistics"):
        InstanceDecoder(batch_norm_statistics="train")


def test_upsampler_convolves_before_interpolating_without_changing_the_result():
    torch.manual_seed(0)
    upsampler = Upsampler(8, 4)
    x = torch.randn(1, 8, 10, 12)
    with torch.inference_mode():
        micro_sam_order = upsampler.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        assert torch.allclose(upsampler(x), micro_sam_order, atol=1e-5)


def test_batch_norm_uses_each_images_statistics_unless_told_otherwise():
    decoder = build_instance_decoder(recipe_decoder_state_dict(0))
    block = decoder.deconv1.block
    x = torch.randn(1, 256, 16, 16)
    with torch.inference_mode():
        normed = block[2](block[1](block[0](x)))
        # micro-sam's decoder stays in training mode: per channel, mean bias and std weight of the image itself.
        assert torch.allclose(normed.mean(dim=(0, 2, 3)), block[2].bias, atol=1e-4)
        decoder.set_batch_norm_statistics("running")
        assert not torch.allclose(block[2](block[1](block[0](x))), normed, atol=1e-3)
    assert torch.equal(block[2].running_mean, recipe_decoder_state_dict(0)["deconv1.block.2.running_mean"])


# -- micro-sam's input image -------------------------------------------------------------


def test_microsam_rgb_stretches_each_channel_and_truncates():
    grey = np.array([[10, 20], [30, 110]], dtype=np.uint16)
    rgb = microsam_rgb(grey)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    # (20 - 10) / 100 * 255 = 25.5 -> 25 (truncated), the maximum -> 255.
    assert rgb[..., 0].tolist() == [[0, 25], [51, 255]] and (rgb[..., 0] == rgb[..., 2]).all()
    two = np.stack([grey, grey], axis=-1)
    assert (microsam_rgb(two)[..., 2] == 0).all()
    with pytest.raises(MobileSAMError, match="one 2D image"):
        microsam_rgb(np.zeros((2, 3, 4, 5)))


# -- parity with micro-sam ---------------------------------------------------------------


@pytest.mark.parametrize("name", AIS_IMAGES)
def test_maps_match_micro_sams_from_our_embedding(name, recipe_model):
    embedding, maps = our_embedding_and_maps(name, recipe_model)
    expected = reference(name)["maps"]
    assert maps.shape == expected.shape and maps.dtype == np.float32
    assert np.abs(maps - expected).max() <= 1e-3


@pytest.mark.parametrize("name", AIS_IMAGES)
def test_full_chain_gives_micro_sams_objects(name, recipe_model):
    _embedding, maps = our_embedding_and_maps(name, recipe_model)
    expected = reference(name)["labels"]
    labels = watershed_from_maps(maps, **AIS_CASES["generate_defaults"])
    matched, theirs, ours = one_to_one(expected, labels, 0.95)
    assert theirs == AIS_CASES["images"][name]["objects"]
    assert matched == theirs == ours


def test_maps_are_cropped_and_resized_like_micro_sams():
    class Ramp(torch.nn.Module):
        """Stands in for the decoder: the model-frame column index, scaled, in every channel."""

        def forward(self, features):
            return torch.arange(1024.0).expand(1, 3, 1024, 1024) / 1024

    from napari_mobilesam import ImageEmbedding

    embedding = ImageEmbedding(np.zeros((256, 64, 64), np.float32), (300, 500), (614, 1024))
    maps = instance_maps(embedding, Ramp())
    assert maps.shape == (3, 300, 500) and maps.dtype == np.float32
    expected = F.interpolate(Ramp()(None)[..., :614, :1024], (300, 500), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(maps, expected[0].numpy(), atol=1e-6)
