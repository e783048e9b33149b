"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def tensor_versions(*tensors: torch.Tensor) -> tuple:
    """A key that changes whenever any tensor is replaced or written in place.

    Derived tensors (fused conv weights, gathered attention biases) are cached
    against this key, so they always follow the weights actually loaded.
    """
    return tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)


class WeightDerived:
    """A value derived from some tensors (weights), made again only when one of them changes.

    Keyed by :func:`tensor_versions`. Under autograd it is made afresh on
    every call, so that gradients reach the tensors it comes from.
    """

    def __init__(self) -> None:
        self._cached: tuple[tuple, object] | None = None

    def __call__(self, tensors, make):
        """The value of ``make()`` for the current ``tensors``."""
        if torch.is_grad_enabled():
            return make()
        key = tensor_versions(*tensors)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, make())
        return self._cached[1]


def cast_weights(owner: nn.Module, tensors: tuple, dtype: torch.dtype) -> tuple:
    """``tensors`` (weights of ``owner``; ``None`` passes through) in ``dtype``, cast once and kept on ``owner``.

    For an encoder run in reduced precision: the cast copies are made again
    only when a weight changes (:func:`tensor_versions`), or on every call
    under autograd. Tensors already in ``dtype`` are returned as they are.
    """
    if all(t is None or t.dtype == dtype for t in tensors):
        return tensors
    if torch.is_grad_enabled():
        return tuple(None if t is None else t.to(dtype) for t in tensors)
    casts = owner.__dict__.setdefault("_casts", {})
    # Weights derived inside inference mode (folded batch norms) have no version counter: they are
    # replaced, never written in place, so their address names them.
    key = tuple((t.data_ptr(), t.device) if t.is_inference() else tensor_versions(t) for t in tensors if t is not None)
    cached = casts.get(dtype)
    if cached is None or cached[0] != key:
        cached = casts[dtype] = (key, tuple(None if t is None else t.to(dtype) for t in tensors))
    return cached[1]


_compute = threading.local()


@contextmanager
def computing_in(dtype: torch.dtype | None) -> Iterator[None]:
    """Within this block, this thread's :func:`linear_as` and folded convolutions
    compute in ``dtype`` (``None``: in their input's dtype), whatever their input's dtype."""
    previous = getattr(_compute, "dtype", None)
    _compute.dtype = dtype
    try:
        yield
    finally:
        _compute.dtype = previous


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a product on ``x`` computes in: the one of :func:`computing_in`, else ``x``'s."""
    return getattr(_compute, "dtype", None) or x.dtype


def linear_as(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` computed in :func:`compute_dtype` (the layer's float32 weights cast once, see :func:`cast_weights`)."""
    dtype = compute_dtype(x)
    if dtype == x.dtype == layer.weight.dtype:
        return layer(x)
    return F.linear(x.to(dtype), *cast_weights(layer, (layer.weight, layer.bias), dtype))


_gelu_inplace = getattr(torch._C._nn, "gelu_", None)


def gelu_(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU, in place when torch offers it (saves a large temporary)."""
    if _gelu_inplace is None:
        return F.gelu(x)
    return _gelu_inplace(x)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor (eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalising a channels-last view is one fused kernel instead of five.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def _onednn_linear():
    """torch's oneDNN linear operator (the one its compiler uses), if this build has one."""
    try:
        if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        pass
    return None


_onednn = {"linear": _onednn_linear()}


def wide_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a layer with megabytes of weights and only a few rows ``x``.

    On the CPU, outside autograd, through oneDNN: for the decoder's token MLP
    (2 MB per layer, a handful of tokens per prompt) it measured ~0.6 ms faster
    per click than torch's default product, inside the decoder, in alternating
    calls (for 256 x 256 layers it was slower, so they keep the default).
    """
    onednn = _onednn["linear"]
    if onednn is not None and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled():
        try:
            return onednn(x, layer.weight, layer.bias, "none", [], "")
        except RuntimeError:  # a build whose operator cannot run here: the default from now on
            _onednn["linear"] = None
    return layer(x)


class MLPBlock(nn.Module):
    """Linear, activation, linear (the two-way transformer's token MLP)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return wide_linear(self.lin2, self.act(wide_linear(self.lin1, x)))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (decoder heads)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims, outs, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x
