"""3x3 convs through NNPACK's Winograd equal oneDNN's direct ones up to rounding, and fall back where it cannot run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_mobilesam.model.winograd_conv import conv3x3, nnpack_usable, winograd_applies

needs_nnpack = pytest.mark.skipif(not nnpack_usable(), reason="this PyTorch has no NNPACK")


@needs_nnpack
@pytest.mark.parametrize(
    ("channels", "out_channels", "height", "width"), [(3, 5, 1, 1), (8, 16, 6, 9), (64, 32, 48, 80)]
)
@pytest.mark.parametrize("padding", [0, 1])
def test_winograd_equals_the_direct_conv(channels, out_channels, height, width, padding):
    torch.manual_seed(0)
    x = torch.randn(1, channels, height + 2 * (1 - padding), width + 2 * (1 - padding))
    weight, bias = torch.randn(out_channels, channels, 3, 3) / (9 * channels) ** 0.5, torch.randn(out_channels)
    with torch.inference_mode():
        assert winograd_applies(x, weight)
        out = conv3x3(x, weight, bias, padding)
        expected = F.conv2d(x.double(), weight.double(), bias.double(), padding=padding).float()
    assert out.shape == (1, out_channels, height, width)
    # F(6x6, 3x3) rounds a little more than the direct method, far inside the decoder's 1e-3.
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_direct_conv_where_winograd_cannot_run():
    x, weight, bias = torch.randn(1, 4, 7, 5), torch.randn(6, 4, 3, 3), torch.randn(6)
    expected = F.conv2d(x, weight, bias, padding=1)
    assert torch.equal(conv3x3(x, weight, bias, winograd=False), expected)
    as_double = [t.double() for t in (x, weight, bias)]
    assert torch.equal(conv3x3(*as_double), F.conv2d(*as_double, padding=1))
    assert not winograd_applies(x, weight.requires_grad_())  # autograd: NNPACK has no backward here
    conv3x3(x, weight, bias).sum().backward()
    assert weight.grad is not None
    with torch.backends.nnpack.flags(enabled=False), torch.inference_mode():
        assert not winograd_applies(x, weight)
        assert torch.equal(conv3x3(x, weight, bias), expected)
