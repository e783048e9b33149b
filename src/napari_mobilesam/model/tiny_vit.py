"""TinyViT-5M image encoder of MobileSAM, with SAM's neck.

Input: a normalised, padded ``(B, 3, 1024, 1024)`` image. Output: the image
embedding ``(B, 256, 64, 64)``. Parameter names follow the official
checkpoint; the ImageNet classifier (``norm_head``, ``head``) is kept only so
that the checkpoint loads strictly, and is never run.

Inference only. Choices that make it fast on a CPU, each equal to the
official arithmetic up to float rounding:

- batch norms are folded into their convolutions (recomputed whenever the
  weights change, see ``tensor_versions``);
- feature maps are channels-last, so 1x1 and depthwise convolutions run on
  oneDNN's fast NHWC kernels and token <-> map conversions are free views;
- the MBConv blocks of the first stage run in bands of rows, so their 4x
  expanded activations stay in cache instead of making three trips to memory;
- GELU is applied in place where the input is a temporary;
- window attention uses ``scaled_dot_product_attention`` with the bias table
  as a mask, gathered from the current ``attention_biases`` (the official
  code caches it at ``.eval()`` time, which goes stale when weights are
  loaded afterwards).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LayerNorm2d, cast_weights, compute_dtype, computing_in, gelu_, linear_as, tensor_versions

# Rows of the first stage's feature map processed at once by an MBConv block:
# 32 rows x 256 px x 256 hidden channels of float32 is 8 MiB, within L3.
MBCONV_BAND_ROWS = 32


class Conv2dBN(nn.Sequential):
    """A bias-free convolution followed by batch norm, folded into one conv in eval."""

    def __init__(self, in_chans, out_chans, kernel_size=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_chans))
        self._fused_key = None
        self._fused = None

    def fused_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        key = tensor_versions(self.c.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        if key != self._fused_key:
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                weight = self.c.weight * scale[:, None, None, None]
                bias = bn.bias - bn.running_mean * scale
            self._fused = (weight, bias)
            self._fused_key = key
        return self._fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Folded in float32, then cast to the compute dtype (reduced precision) once.
        dtype = compute_dtype(x)
        weight, bias = cast_weights(self, self.fused_weight_and_bias(), dtype)
        c = self.c
        return F.conv2d(x.to(dtype), weight, bias, c.stride, c.padding, c.dilation, c.groups)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: 1024 px -> 256 tokens per side."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, _, conv2 = self.seq
        return conv2(gelu_(conv1(x)))


class MBConv(nn.Module):
    """Inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project)."""

    def __init__(self, chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = Conv2dBN(chans, hidden, 1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, chans, 1)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        out = torch.empty_like(x)
        for top in range(0, height, MBCONV_BAND_ROWS):
            bottom = min(top + MBCONV_BAND_ROWS, height)
            # One halo row each side feeds the depthwise 3x3; at the image
            # border the conv's own zero padding is the official behaviour.
            lo, hi = max(top - 1, 0), min(bottom + 1, height)
            y = gelu_(self.conv1(x[:, :, lo:hi]))
            y = self.conv2(y)[:, :, top - lo : top - lo + bottom - top]
            out[:, :, top:bottom] = self.conv3(gelu_(y))
        out += x
        return gelu_(out)


class PatchMerging(nn.Module):
    """Downsampling between stages; MobileSAM keeps stride 1 into the last stage."""

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim, 1)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # (B, L, C) tokens -> (B, C, H, W)
            h, w = self.input_resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = gelu_(self.conv1(x))
        x = gelu_(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)  # a view for channels-last maps


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on the feature map, then patch merging."""

    def __init__(self, dim, input_resolution, depth, out_dim, expand_ratio=4.0):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(input_resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class Attention(nn.Module):
    """Multi-head self-attention inside one window, with a learned relative-position bias.

    ``attention_biases`` holds one value per head and per (|dy|, |dx|) offset;
    ``attention_bias_idxs`` maps every (query, key) pair of the window to its offset.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim**-0.5
        inner = key_dim * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, inner * 3)
        self.proj = nn.Linear(inner, dim)

        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer(
            "attention_bias_idxs", torch.tensor(idxs, dtype=torch.long).view(len(points), len(points)), persistent=False
        )
        self._bias_key = None
        self._bias = None

    def bias_table(self) -> torch.Tensor:
        """``(heads, N, N)`` bias gathered from the current ``attention_biases``."""
        key = tensor_versions(self.attention_biases, self.attention_bias_idxs)
        if key != self._bias_key:
            with torch.no_grad():
                self._bias = self.attention_biases[:, self.attention_bias_idxs]
            self._bias_key = key
        return self._bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        b, n, _ = x.shape
        qkv = linear_as(self.qkv, self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim).transpose(1, 2)
        q, k, v = qkv.split(self.key_dim, dim=-1)
        # A 4-D mask lets torch pick its fused CPU attention kernel.
        bias = self.bias_table().to(q.dtype)[None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return linear_as(self.proj, out.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    """Pre-norm feed-forward block of a TinyViT block."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_as(self.fc2, gelu_(linear_as(self.fc1, self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise 3x3 "local conv", then the MLP."""

    def __init__(self, dim, input_resolution, num_heads, window_size, mlp_ratio=4.0):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, (window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x)
        x = x.view(b, h, w, c)
        pad_b = (ws - h % ws) % ws
        pad_r = (ws - w % ws) % ws
        if pad_b or pad_r:
            # Padded tokens take part as keys, exactly as in the official model.
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        if pad_b or pad_r:
            x = x[:, :h, :w]
        return x.reshape(b, length, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        x = x + self.window_attention(x)
        # The local conv sees a channels-last view of the tokens: no copies. In reduced
        # precision its output joins the tokens' (float32) stream.
        stream = x.dtype
        x = self.local_conv(x.view(b, h, w, c).permute(0, 3, 1, 2)).to(stream)
        x = x.permute(0, 2, 3, 1).reshape(b, length, c)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """A stage of TinyViT blocks, optionally followed by patch merging."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, out_dim=None, mlp_ratio=4.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio) for _ in range(depth)
        )
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class TinyViT(nn.Module):
    """TinyViT image encoder as configured by MobileSAM (``vit_t``)."""

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        side = img_size // 4
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            # The last patch merging has stride 1, so stages 2 and 3 share a resolution.
            res = side // 2 ** (i - 1 if i == 3 else i)
            last = i == len(embed_dims) - 1
            out_dim = None if last else embed_dims[i + 1]
            if i == 0:
                layer = ConvLayer(dim, (res, res), depths[i], out_dim, mbconv_expand_ratio)
            else:
                layer = BasicLayer(dim, (res, res), depths[i], num_heads[i], window_sizes[i], out_dim, mlp_ratio)
            self.layers.append(layer)
        self.embedding_side = side // 2 ** (len(embed_dims) - 2)
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The float32 embedding ``(B, 256, 64, 64)`` of a preprocessed ``(B, 3, 1024, 1024)`` image.

        ``dtype``: what the convolutions, products and attention compute in
        (``torch.bfloat16`` or ``torch.float16`` for reduced precision; default
        ``x``'s). The weights stay float32 and are cast once per dtype. Where
        the error arises was measured stage by stage (docs/benchmarks.md,
        "Precision and batches"): the first stage (convolutions on the largest
        maps, little error) runs in ``dtype`` end to end; from the second on,
        the tokens' residual stream (sums, layer norms) stays float32 and only
        products, convolutions and attention are reduced; the neck (7 % of the
        work, its rounding straight in the embedding) stays float32.
        """
        x = x.contiguous(memory_format=torch.channels_last)
        with computing_in(dtype):
            x = self.patch_embed(x if dtype is None else x.to(dtype))
            for index, layer in enumerate(self.layers):
                x = layer(x if index == 0 or dtype is None else x.float())
        b, _, c = x.shape
        side = self.embedding_side
        x = x.view(b, side, side, c).permute(0, 3, 1, 2)
        return self.neck(x).contiguous()
