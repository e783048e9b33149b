"""Instance statistics from chunked sums, and a per-channel affine map folded into the zero-padded conv after it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_mobilesam.model.normalized_conv import affine_conv3x3, instance_statistics

SIZES = [(1, 1), (1, 4), (2, 3), (3, 3), (5, 7), (48, 80), (33, 40)]


@pytest.mark.parametrize(("height", "width"), [(1, 2), (3, 5), (32, 32), (33, 40), (96, 128)])
def test_instance_statistics_normalise_each_channel(height, width):
    torch.manual_seed(0)
    # Shifted and scaled channels, as after a conv or a ReLU (mean a few standard deviations from 0).
    x = (
        torch.randn(1, 6, height, width) * torch.arange(1.0, 7.0)[:, None, None]
        + torch.arange(-3.0, 3.0)[:, None, None]
    )
    scale, shift = instance_statistics(x, 1e-5)
    expected = F.instance_norm(x.double(), eps=1e-5).float()
    torch.testing.assert_close(x * scale[:, None, None] + shift[:, None, None], expected, atol=2e-5, rtol=0)
    assert scale.dtype == shift.dtype == torch.float32 and scale.shape == (6,)


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize("winograd", [False, True])
def test_folded_affine_equals_normalising_first(height, width, winograd):
    torch.manual_seed(height * 100 + width)
    x = torch.randn(1, 5, height, width)
    weight, bias = torch.randn(7, 5, 3, 3) / 7, torch.randn(7)
    scale, shift = torch.rand(5) + 0.5, torch.randn(5) * 2  # a large shift: the border response matters
    expected = F.conv2d(
        (x * scale[:, None, None] + shift[:, None, None]).double(), weight.double(), bias.double(), padding=1
    )
    with torch.inference_mode():
        out = affine_conv3x3(x, weight, bias, scale, shift, winograd)
    torch.testing.assert_close(out, expected.float(), atol=1e-4 if winograd else 1e-5, rtol=0)


def test_the_border_response_is_needed():
    """Folding the shift into the bias alone is wrong on the border (the padding is zero after the norm)."""
    x, weight, bias = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3), torch.zeros(3)
    shift = torch.tensor([1.0, -2.0])
    inner_only = F.conv2d(x, weight, bias + (weight * shift[None, :, None, None]).sum((1, 2, 3)), padding=1)
    expected = F.conv2d(x + shift[:, None, None], weight, bias, padding=1)
    out = affine_conv3x3(x, weight, bias, torch.ones(2), shift, winograd=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(inner_only[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
    assert (inner_only[..., 0, :] - expected[..., 0, :]).abs().min() > 1e-3
