"""Low-res logits to the original size equal the official 1024x1024 detour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_mobilesam.engine.mask_resize import resize_logits
from napari_mobilesam.engine.preprocessing import preprocess_shape


def official_postprocess(low_res: torch.Tensor, input_size, original_size) -> torch.Tensor:
    """SAM's postprocess_masks: upsample to 1024, crop the padding, resize to the original size."""
    masks = F.interpolate(low_res, (1024, 1024), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("original_size", [(512, 512), (300, 450), (2000, 1500), (37, 1024), (1, 1)])
def test_resize_equals_the_official_detour(original_size):
    low_res = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 8
    input_size = preprocess_shape(*original_size)
    expected = official_postprocess(low_res, input_size, original_size)
    actual = resize_logits(low_res, input_size, original_size)
    assert actual.shape == expected.shape and actual.is_contiguous()
    # Float rounding of a few taps against two interpolations: relative to the logits' scale.
    torch.testing.assert_close(actual, expected, atol=5e-5 * float(low_res.abs().max()), rtol=0)
