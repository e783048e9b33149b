"""The token MLP's product through oneDNN equals torch's linear layer, and autograd still reaches the weights."""

from __future__ import annotations

import torch

from napari_mobilesam.model.layers import MLPBlock, wide_linear


def test_wide_linear_equals_the_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 2048)
    x = torch.randn(3, 7, 256)
    with torch.inference_mode():
        torch.testing.assert_close(wide_linear(layer, x), layer(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(wide_linear(layer, x[0]), layer(x[0]), atol=1e-5, rtol=1e-5)


def test_token_mlp_trains():
    block = MLPBlock(16, 64, torch.nn.ReLU)
    block(torch.randn(2, 5, 16)).square().sum().backward()
    assert block.lin1.weight.grad is not None and block.lin1.weight.grad.abs().sum() > 0
