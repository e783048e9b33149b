import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_mobilesam.engine.mask_prompt import EPS, logits_from_mask
from napari_mobilesam.errors import MobileSAMError


def _torch_logits(mask: np.ndarray) -> np.ndarray:
    """The same prompt through torch's bilinear resize (what micro-sam's mask prompts use)."""
    confident = math.log((1 - EPS) / EPS)
    logits = torch.from_numpy(np.where(mask, confident, -confident).astype(np.float32))[None, None]
    scale = 256 / max(mask.shape)
    size = (max(1, int(mask.shape[0] * scale + 0.5)), max(1, int(mask.shape[1] * scale + 0.5)))
    resized = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0]
    out = torch.full((1, 256, 256), -confident)
    out[:, : size[0], : size[1]] = resized[:, :256, :256]
    return out.numpy()


@pytest.mark.parametrize("shape", [(512, 512), (300, 700), (700, 300), (100, 90), (1000, 37), (256, 256)])
def test_mask_logits_match_torchs_bilinear_resize(shape):
    rng = np.random.default_rng(sum(shape))
    mask = np.zeros(shape, dtype=bool)
    for _ in range(6):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        mask[max(0, y - 20) : y + 20, max(0, x - 15) : x + 15] = True
    ours = logits_from_mask(mask)
    assert ours.shape == (1, 256, 256) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _torch_logits(mask), atol=2e-5)


def test_mask_logits_reject_what_is_not_one_2d_mask():
    with pytest.raises(MobileSAMError, match="one 2D mask"):
        logits_from_mask(np.zeros((2, 3, 4), dtype=bool))
    with pytest.raises(MobileSAMError, match="one 2D mask"):
        logits_from_mask(np.zeros((0, 4), dtype=bool))
