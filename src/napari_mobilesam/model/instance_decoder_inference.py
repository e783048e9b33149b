"""The instance decoder's forward pass for inference, restructured to do less work; same maps up to rounding.

:class:`~napari_mobilesam.model.instance_decoder.InstanceDecoder` is micro-sam's
UNETR head layer by layer (and what training would use). Inference on one
image runs the same arithmetic in another order. Profile of one 1024 px frame
on 2 busy cores, module against this (both in one process): 20.6 s against
9.5 s; the 3x3 convs at 1024 px 6.9 s against 3.1 s, the other convs ~9 s
against ~3 s, norms, concatenations, copies and upsamples ~3 s against ~1.5 s:

- **Winograd** 3x3 convs (NNPACK's F(6x6, 3x3), :mod:`.winograd_conv`):
  5x fewer multiplications, about 2x faster convs in practice (least at
  64 channels and 1024 px, where they stay ~35 % of the time).
- **Norms folded into the convs** (:mod:`.normalized_conv`): an instance norm
  is a per-channel scale and shift of the conv's input; its statistics are
  one pass over the map, and the normalised map is never written.
- **Upsample-then-conv at the low resolution** (:mod:`.upsampled_conv`):
  ``deconv1`` (256 -> 512 channels, its 1x1 conv folded into four phase
  kernels: half the multiply-adds) and ``deconv4`` (whose 64-channel conv at
  1024 px runs as a 256-channel conv at 512 px: twice as fast).
- **Fewer passes over the large maps**: an upsample is written straight into
  its half of the joined buffer (``out=``), and at 1024 px ``deconv4``'s batch
  norm and ReLU write ``z0`` into the other half from the phase layout (no
  pixel shuffle, no concatenation); 1x1 convs are single matrix products.
- **Only the rows and columns that are read**: the last conv, the 1x1 output
  conv and the sigmoid run on the part of the 1024x1024 frame that the
  image covers (plus one row and column of context). The norms' statistics
  still cover the whole frame, as micro-sam's do.

Batch norm uses each image's own statistics (micro-sam's training-mode
behaviour) or the running ones, as the decoder is set. Inference only
(``torch.inference_mode`` or ``no_grad``), one image at a time.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from .instance_decoder import ConvBlock, DeconvBlock, InstanceDecoder, _crop_like
from .layers import WeightDerived
from .normalized_conv import affine_conv3x3, instance_statistics
from .upsampled_conv import as_image, phase_kernels, upsampled_conv3x3
from .winograd_conv import conv3x3

_runners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _conv1x1(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """A 1x1 conv of one ``(1, C, H, W)`` map as one matrix product (oneDNN's NCHW 1x1 kernel is 1.5-6x slower)."""
    channels, height, width = x.shape[1:]
    weight = conv.weight.reshape(conv.out_channels, channels)
    return torch.addmm(conv.bias[:, None], weight, x.reshape(channels, -1)).view(1, -1, height, width)


class InstanceDecoderInference:
    """Runs an :class:`InstanceDecoder`'s forward the fast way; keeps its derived weights (phase kernels).

    Use :meth:`for_decoder` to share one per decoder. ``winograd=False`` uses
    direct convolutions (to test the exact algebra alone).
    """

    def __init__(self, decoder: InstanceDecoder, winograd: bool = True) -> None:
        self.decoder = decoder
        self.winograd = winograd
        self._deconv1_phases = WeightDerived()
        self._deconv4_phases = WeightDerived()

    @classmethod
    def for_decoder(cls, decoder: InstanceDecoder) -> InstanceDecoderInference:
        """The shared runner of ``decoder`` (made on first use, dropped with the decoder)."""
        runner = _runners.get(decoder)
        if runner is None:
            runner = _runners[decoder] = cls(decoder)
        return runner

    # -- blocks ------------------------------------------------------------------------

    def _conv_block(self, block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
        """Instance norm, conv, ReLU, twice; the norms folded into the convs."""
        first_norm, first, _, second_norm, second, _ = block.block
        x = affine_conv3x3(x, first.weight, first.bias, *instance_statistics(x, first_norm.eps), self.winograd)
        x.relu_()
        x = affine_conv3x3(x, second.weight, second.bias, *instance_statistics(x, second_norm.eps), self.winograd)
        return x.relu_()

    @staticmethod
    def _batch_norm_relu(block: DeconvBlock, y: torch.Tensor, source=None, out=None) -> torch.Tensor:
        """Batch norm (image or running statistics, as the decoder is set) and ReLU of ``y``.

        In place, or read from ``source`` (a view of ``y``) into ``out`` (a view of another buffer).
        """
        norm = block.block[2]
        if norm.use_image_statistics:
            scale, shift = instance_statistics(y, norm.eps)
        else:
            scale = torch.rsqrt(norm.running_var + norm.eps)
            shift = -norm.running_mean * scale
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
        index = (slice(None),) + (None,) * (y.dim() - 2 if source is None else source.dim() - 2)
        source = y if source is None else source
        out = torch.addcmul(shift[index], source, scale[index], out=y if out is None else out)
        return out.relu_()

    def _deconv(self, block: DeconvBlock, x: torch.Tensor) -> torch.Tensor:
        """Upsample, 3x3 conv (the pre-norm output; the caller applies batch norm and ReLU)."""
        sampler, conv = block.block[0], block.block[1].block
        if hasattr(sampler, "conv"):
            upsampled = F.interpolate(_conv1x1(x, sampler.conv), scale_factor=2, mode="bilinear", align_corners=False)
        else:
            upsampled = sampler(x)
        return conv3x3(upsampled, conv.weight, conv.bias, winograd=self.winograd)

    def _upsampled_deconv(self, block: DeconvBlock, x: torch.Tensor, cache: WeightDerived, fold_pre: bool):
        """A bilinear deconv block's upsample and conv as phases at ``x``'s resolution (``fold_pre``: its 1x1 too)."""
        pre, conv = block.block[0].conv, block.block[1].block
        folded = (pre.weight, pre.bias) if fold_pre else (None, None)
        if not fold_pre:
            x = _conv1x1(x, pre)
        tensors = (conv.weight, conv.bias, *(folded if fold_pre else ()))
        phases = cache(tensors, lambda: phase_kernels(conv.weight, conv.bias, *folded))
        return upsampled_conv3x3(x, conv.weight, conv.bias, phases, *folded, winograd=self.winograd)

    @staticmethod
    def _joined(y: torch.Tensor, skip: torch.Tensor | int) -> torch.Tensor:
        """``cat([upsample_x2(y), skip])`` in one buffer, the upsample written straight into its half.

        ``skip`` an int: that many channels left for the caller to write.
        """
        channels, height, width = y.shape[1], 2 * y.shape[-2], 2 * y.shape[-1]
        skip_channels = skip if isinstance(skip, int) else skip.shape[1]
        joined = torch.empty(1, channels + skip_channels, height, width, dtype=y.dtype, device=y.device)
        torch._C._nn.upsample_bilinear2d(y, [height, width], False, 2.0, 2.0, out=joined[:, :channels])
        if not isinstance(skip, int):
            joined[:, channels:] = skip
        return joined

    # -- forward -----------------------------------------------------------------------

    def __call__(self, features: torch.Tensor, valid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The decoder's maps for one embedding, computed only where needed.

        Args:
            features: ``(1, 256, h, w)`` embedding, ``h, w >= 2``.
            valid_size: ``(rows, cols)`` of the output frame to return (the image's
                ``input_size``); the whole ``(16 h, 16 w)`` frame if ``None``.

        Returns:
            ``(1, 3, rows, cols)``: ``decoder(features)[..., :rows, :cols]`` up to rounding.
        """
        if features.shape[0] != 1:
            raise ValueError(f"InstanceDecoderInference runs one image at a time, got a batch of {features.shape[0]}.")
        valid_size = valid_size or (16 * features.shape[-2], 16 * features.shape[-1])
        if self.decoder.transposed:
            return self._transposed(features, valid_size)
        d = self.decoder
        phases = self._upsampled_deconv(d.deconv1, features, self._deconv1_phases, fold_pre=True)
        z9 = torch.empty_like(as_image(phases), memory_format=torch.contiguous_format)
        self._batch_norm_relu(d.deconv1, phases, as_image(phases), z9)
        z9 = z9.view(1, -1, 2 * features.shape[-2], 2 * features.shape[-1])
        del phases
        z6 = self._batch_norm_relu(d.deconv2, self._deconv(d.deconv2, z9))
        z3 = self._batch_norm_relu(d.deconv3, self._deconv(d.deconv3, z6))

        x = self._conv_block(d.base, features)
        for block, sampler, skip in zip(d.decoder.blocks, d.decoder.samplers, (z9, z6, z3), strict=True):
            y = _conv1x1(x, sampler.conv)
            start = (skip.shape[1] - y.shape[1]) // 2  # torch_em crops the skip's channels to the middle ones
            x = self._conv_block(block, self._joined(y, skip[:, start : start + y.shape[1]]))
        del z9, z6

        # The head's input [deconv_out(x), z0]: deconv4's batch norm and ReLU write z0 into its half.
        phases = self._upsampled_deconv(d.deconv4, z3, self._deconv4_phases, fold_pre=False)
        del z3
        channels, height, width = phases.shape[1], 2 * phases.shape[-2], 2 * phases.shape[-1]
        joined = self._joined(_conv1x1(x, d.deconv_out.conv), channels)
        del x
        z0 = joined[:, -channels:].view(1, channels, height // 2, 2, width // 2, 2)
        self._batch_norm_relu(d.deconv4, phases, as_image(phases), z0)
        del phases, z0
        return self._head(joined, valid_size)

    def _transposed(self, features: torch.Tensor, valid_size: tuple[int, int]) -> torch.Tensor:
        """The transposed-conv kind: the same folded norms, upsamples formed (no phase kernels for them)."""
        d = self.decoder
        z9 = self._batch_norm_relu(d.deconv1, self._deconv(d.deconv1, features))
        z6 = self._batch_norm_relu(d.deconv2, self._deconv(d.deconv2, z9))
        z3 = self._batch_norm_relu(d.deconv3, self._deconv(d.deconv3, z6))
        z0 = self._batch_norm_relu(d.deconv4, self._deconv(d.deconv4, z3))
        x = self._conv_block(d.base, features)
        for block, sampler, skip in zip(d.decoder.blocks, d.decoder.samplers, (z9, z6, z3), strict=True):
            upsampled = sampler(x)
            x = self._conv_block(block, torch.cat([upsampled, _crop_like(skip, upsampled)], dim=1))
        return self._head(torch.cat([d.deconv_out(x), z0], dim=1), valid_size)

    def _head(self, joined: torch.Tensor, valid_size: tuple[int, int]) -> torch.Tensor:
        """``decoder_head``, ``out_conv``, sigmoid; the second conv on the valid part only."""
        d = self.decoder
        first_norm, first, _, second_norm, second, _ = d.decoder_head.block
        hidden = affine_conv3x3(
            joined, first.weight, first.bias, *instance_statistics(joined, first_norm.eps), self.winograd
        )
        del joined
        hidden.relu_()
        scale, shift = instance_statistics(hidden, second_norm.eps)  # over the whole frame, as micro-sam's
        rows, cols = valid_size
        # One more row and column than kept: the conv reads its neighbours (the extra output is dropped).
        needed = hidden[..., : min(rows + 1, hidden.shape[-2]), : min(cols + 1, hidden.shape[-1])]
        out = affine_conv3x3(needed, second.weight, second.bias, scale, shift, self.winograd)
        del hidden, needed
        out = out[..., :rows, :cols].relu_()
        return torch.sigmoid_(_conv1x1(out.contiguous(), d.out_conv))
