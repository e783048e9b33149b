"""A 3x3 conv of a bilinear x2 upsample computed as four phase kernels at the low resolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_mobilesam.model.upsampled_conv import as_image, phase_kernels, upsampled_conv3x3


def _upsample_then_conv(y, weight, bias, pre=None):
    if pre is not None:
        y = F.conv2d(y, *pre)
    return F.conv2d(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False), weight, bias, padding=1)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 4), (2, 2), (2, 5), (7, 3), (24, 40)])
@pytest.mark.parametrize("with_pre", [False, True])
@pytest.mark.parametrize("winograd", [False, True])
def test_phases_equal_upsampling_then_convolving(height, width, with_pre, winograd):
    torch.manual_seed(height * 10 + width)
    y = torch.randn(1, 4, height, width)
    weight, bias = torch.randn(6, 5 if with_pre else 4, 3, 3) / 6, torch.randn(6)
    pre = (torch.randn(5, 4, 1, 1) / 2, torch.randn(5)) if with_pre else (None, None)
    expected = _upsample_then_conv(
        y.double(), weight.double(), bias.double(), *([[p.double() for p in pre]] if with_pre else [])
    )
    with torch.inference_mode():
        phases = upsampled_conv3x3(y, weight, bias, phase_kernels(weight, bias, *pre), *pre, winograd=winograd)
    assert phases.shape == (1, 6, 2, 2, height, width) and phases.is_contiguous()
    image = as_image(phases).reshape(1, 6, 2 * height, 2 * width)
    torch.testing.assert_close(image, expected.float(), atol=1e-4 if winograd else 1e-5, rtol=0)
    # Pixel (2i + p, 2j + q) is phases[:, :, p, q, i, j].
    torch.testing.assert_close(phases[:, :, 1, 0], image[:, :, 1::2, 0::2])


def test_the_border_is_corrected_where_the_replicate_padding_differs():
    """Without the ring's share subtracted, the outermost rows and columns would be wrong (and only those)."""
    torch.manual_seed(1)
    y, weight, bias = torch.randn(1, 3, 6, 5) + 2, torch.randn(4, 3, 3, 3), torch.randn(4)
    phase_weight, phase_bias = phase_kernels(weight, bias)
    raw = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), phase_weight, phase_bias)
    raw = F.pixel_shuffle(raw, 2)
    expected = _upsample_then_conv(y, weight, bias)
    torch.testing.assert_close(raw[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
    assert (raw[..., 0, :] - expected[..., 0, :]).abs().max() > 1e-2
    fixed = as_image(upsampled_conv3x3(y, weight, bias, (phase_weight, phase_bias), winograd=False)).reshape(
        expected.shape
    )
    torch.testing.assert_close(fixed, expected, atol=1e-5, rtol=0)
