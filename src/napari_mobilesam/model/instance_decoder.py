"""micro-sam's instance decoder: a UNETR head on the image embedding, predicting three maps.

micro-sam (MIT, computational-cell-analytics) trained, beside its fine-tuned
MobileSAM models (``vit_t_lm``, ``vit_t_em_organelles``), a convolutional
decoder on the ``(256, 64, 64)`` image embedding: torch_em's
``UNETR(backbone="sam", use_skip_connection=False, resize_input=True)`` without
its encoder, as micro-sam's ``DecoderAdapter`` runs it. Its output, after a
sigmoid, is three maps in the 1024x1024 model frame: foreground probability,
distance to the object centre and distance to the object boundary (both
normalised per object to 0..1, 0 at the centre). See
:mod:`napari_mobilesam.segment.instance_maps` for the maps at the image size.

The data flow (channels at 64, 128, 256, 512, 1024 px):

- a path of upsampling blocks from the embedding: ``deconv1`` 256->512 ch at
  128 px, ``deconv2`` ->256 ch at 256 px, ``deconv3`` ->128 ch at 512 px,
  ``deconv4`` ->64 ch at 1024 px (each: upsample x2, 3x3 conv, batch norm, ReLU);
- ``base``: a conv block on the embedding (256->512 ch at 64 px);
- ``decoder``: three levels of "upsample x2, join the matching deconv output,
  conv block" (512->256->128->64 ch, up to 512 px);
- ``deconv_out`` upsamples to 1024 px, joined with ``deconv4``'s output, then
  ``decoder_head`` (conv block 128->64), ``out_conv`` (1x1, 64->3), sigmoid.

A conv block is ``InstanceNorm, 3x3 conv, ReLU, InstanceNorm, 3x3 conv, ReLU``
(instance norm without weights). An upsampler is either bilinear x2 and a 1x1
conv (``*.conv.*`` keys) or a 2x2 stride-2 transposed conv (``*.block.*``
keys); a decoder file uses one kind throughout, told by its keys as micro-sam
tells it (:func:`uses_transposed_convolutions`).

Two facts of the original that this reproduces on purpose:

- Joining a decoder level with a deconv output crops the latter, as torch_em's
  ``Decoder._crop`` does, in the channel axis too: the level at 128 px takes
  the middle 256 of ``deconv1``'s 512 channels (128..383), and so on.
- micro-sam never switches the decoder to eval mode, so its batch norms
  normalise with the statistics of the image itself (training mode), not the
  stored running statistics. ``batch_norm_statistics`` chooses; the default
  ``"image"`` is micro-sam's behaviour.

The state dict keys are exactly those of micro-sam's decoder files (66 for the
bilinear kind), so a file loads with ``strict=True``; :func:`build_instance_decoder`
builds the matching kind from a state dict and says clearly what does not fit.
No I/O here.

Where the state dicts come from (micro-sam 1.8.14), for whoever writes the loader:

- the model zoo ships two files per model, e.g. ``vit_t_lm``: ``vit_t.pt`` (SAM)
  and ``vit_t_decoder.pt``. Its export (``bioimageio/model_export.py``) saves
  both as plain state dicts of tensors (SAM keys without prefix, decoder keys
  as here) and reads them back with ``weights_only=True``;
- a combined file is ``{"model_state": <SAM keys, no prefix>, "decoder_state": <decoder keys>}``
  (``util.export_custom_sam_model``, ``training.export_instance_segmentation_model``);
- a torch_em training checkpoint is a dict with ``"model_state"`` (SAM keys
  prefixed ``"sam."``), ``"decoder_state"`` (the joint trainer) and pickled
  Python objects besides (``"init"``, optimizer and scheduler states), which
  is why micro-sam unpickles with ``weights_only=False`` and a permissive unpickler;
- the decoder keys are the UNETR's keys that do not start with ``encoder``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MobileSAMError

EMBED_DIM = 256
# Channels per decoder level, coarsest first (torch_em: initial_features 64, gain 2, depth 3).
FEATURES = (512, 256, 128, 64)
OUT_CHANNELS = 3
# Output maps: channel index -> meaning.
MAP_NAMES = ("foreground", "center_distance", "boundary_distance")
BATCH_NORM_STATISTICS = ("image", "running")
# micro-sam's decoder files hold the UNETR's keys that do not start with "encoder".
_MAX_KEYS_SHOWN = 5


class Upsampler(nn.Module):
    """x2 bilinear upsampling and a 1x1 conv (torch_em's ``Upsampler2d``; keys ``conv.*``).

    The conv runs first, at the low resolution: a 1x1 conv and bilinear
    interpolation are both linear (and interpolation weights sum to 1, so the
    bias passes through), hence they commute; the conv then costs a quarter.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=False)


class TransposedUpsampler(nn.Module):
    """A 2x2 stride-2 transposed conv (torch_em's ``SingleDeconv2DBlock``; keys ``block.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def _upsampler(in_channels: int, out_channels: int, transposed: bool) -> nn.Module:
    return (TransposedUpsampler if transposed else Upsampler)(in_channels, out_channels)


class ConvBlock(nn.Module):
    """Instance norm, 3x3 conv, ReLU, twice (torch_em's ``ConvBlock2d``; keys ``block.1.*``, ``block.4.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.InstanceNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.InstanceNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _Conv3x3(nn.Module):
    """A padded 3x3 conv under the key ``block`` (torch_em's ``SingleConv2DBlock``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _ImageBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that can normalise with the batch's own statistics while staying in eval mode.

    ``use_image_statistics``: what micro-sam's decoder does (it stays in
    training mode); the running statistics are then never updated here.
    """

    use_image_statistics: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_image_statistics:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class DeconvBlock(nn.Module):
    """Upsample x2, 3x3 conv, batch norm, ReLU (torch_em's ``Deconv2DBlock``; keys ``block.0..2``)."""

    def __init__(self, in_channels: int, out_channels: int, transposed: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _upsampler(in_channels, out_channels, transposed),
            _Conv3x3(out_channels),
            _ImageBatchNorm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def _crop_like(skip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The centre of ``skip`` in the shape of ``reference``, channels included (torch_em's ``Decoder._crop``)."""
    index = [slice(None)]
    for have, want in zip(skip.shape[1:], reference.shape[1:], strict=True):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return skip[tuple(index)]


class UNETRDecoder(nn.Module):
    """The three decoder levels: ``samplers`` (x2 each) and ``blocks`` (keys ``decoder.*``)."""

    def __init__(self, transposed: bool) -> None:
        super().__init__()
        pairs = list(zip(FEATURES[:-1], FEATURES[1:], strict=True))
        self.blocks = nn.ModuleList(ConvBlock(inc, outc) for inc, outc in pairs)
        self.samplers = nn.ModuleList(_upsampler(inc, outc, transposed) for inc, outc in pairs)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, sampler, skip in zip(self.blocks, self.samplers, skips, strict=True):
            x = sampler(x)
            x = block(torch.cat([x, _crop_like(skip, x)], dim=1))
        return x


class InstanceDecoder(nn.Module):
    """micro-sam's instance decoder on a precomputed embedding (see the module doc).

    Args:
        transposed: upsample with transposed convs instead of bilinear + 1x1 conv.
        batch_norm_statistics: ``"image"`` (micro-sam's behaviour: each image's
            own statistics) or ``"running"`` (the stored running statistics).

    ``forward(features)``: ``(B, 256, 64, 64)`` embedding -> ``(B, 3, 1024, 1024)``
    float maps in 0..1, in the model's 1024x1024 input frame (the image lies in
    its top-left ``input_size`` corner); channels as in :data:`MAP_NAMES`.
    """

    def __init__(self, transposed: bool = False, batch_norm_statistics: str = "image") -> None:
        super().__init__()
        self.transposed = transposed
        first, second, third, fourth = FEATURES
        self.base = ConvBlock(EMBED_DIM, first)
        self.out_conv = nn.Conv2d(fourth, OUT_CHANNELS, 1)
        self.deconv_out = _upsampler(fourth, fourth, transposed)
        self.decoder_head = ConvBlock(2 * fourth, fourth)
        self.decoder = UNETRDecoder(transposed)
        self.deconv1 = DeconvBlock(EMBED_DIM, first, transposed)
        self.deconv2 = DeconvBlock(first, second, transposed)
        self.deconv3 = DeconvBlock(second, third, transposed)
        self.deconv4 = DeconvBlock(third, fourth, transposed)
        self.set_batch_norm_statistics(batch_norm_statistics)
        self.eval()

    def set_batch_norm_statistics(self, statistics: str) -> None:
        """``"image"`` (micro-sam's behaviour) or ``"running"``; see the module doc."""
        if statistics not in BATCH_NORM_STATISTICS:
            raise MobileSAMError(
                f"batch_norm_statistics must be one of {BATCH_NORM_STATISTICS}, got {statistics!r}; "
                "use 'image' to match micro-sam."
            )
        self.batch_norm_statistics = statistics
        for module in self.modules():
            if isinstance(module, _ImageBatchNorm):
                module.use_image_statistics = statistics == "image"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z9 = self.deconv1(features)
        z6 = self.deconv2(z9)
        z3 = self.deconv3(z6)
        z0 = self.deconv4(z3)
        x = self.decoder(self.base(features), [z9, z6, z3])
        x = self.decoder_head(torch.cat([self.deconv_out(x), z0], dim=1))
        return torch.sigmoid(self.out_conv(x))


def uses_transposed_convolutions(state_dict: Mapping[str, object]) -> bool:
    """micro-sam's test: a ``decoder.samplers.*`` key with ``.block.`` means transposed convs."""
    return any(".block." in key for key in state_dict if key.startswith("decoder.samplers"))


def build_instance_decoder(
    state_dict: Mapping[str, torch.Tensor], batch_norm_statistics: str = "image"
) -> InstanceDecoder:
    """The decoder of a micro-sam decoder state dict, its kind told by its keys, loaded strictly.

    Args:
        state_dict: ``{key: tensor}`` as in micro-sam's ``*_decoder.pt`` files, or
            the ``"decoder_state"`` entry of a combined checkpoint.
        batch_norm_statistics: see :class:`InstanceDecoder`.

    Returns:
        An :class:`InstanceDecoder` in eval mode on the CPU, float32.

    Raises:
        MobileSAMError: a key is missing or unexpected, or a tensor has the wrong
            shape; the message names the first few.
    """
    if not isinstance(state_dict, Mapping):
        raise MobileSAMError(
            f"An instance decoder needs a state dict ({{key: tensor}}), got {type(state_dict).__name__}; "
            "pass the decoder file's contents or a checkpoint's 'decoder_state'."
        )
    decoder = InstanceDecoder(uses_transposed_convolutions(state_dict), batch_norm_statistics)
    check_state_dict(decoder, state_dict)
    decoder.load_state_dict({key: torch.as_tensor(value) for key, value in state_dict.items()}, strict=True)
    return decoder


def check_state_dict(decoder: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise one :class:`MobileSAMError` naming the first few missing, unexpected or misshapen keys."""
    expected = decoder.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshapen = [
        f"{key} {tuple(torch.as_tensor(state_dict[key]).shape)} (expected {tuple(expected[key].shape)})"
        for key in expected
        if key in state_dict and tuple(torch.as_tensor(state_dict[key]).shape) != tuple(expected[key].shape)
    ]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)):
        if keys:
            shown = ", ".join(keys[:_MAX_KEYS_SHOWN]) + (
                f" and {len(keys) - _MAX_KEYS_SHOWN} more" if len(keys) > _MAX_KEYS_SHOWN else ""
            )
            problems.append(f"{len(keys)} {what}: {shown}")
    if problems:
        raise MobileSAMError(
            "This is not a micro-sam instance decoder for MobileSAM (vit_t): "
            + "; ".join(problems)
            + ". Use the decoder file that belongs to the model (e.g. vit_t_lm_decoder.pt)."
        )
