"""micro-sam's three instance maps at the image size, from an image embedding and the instance decoder.

What micro-sam's ``InstanceSegmentationWithDecoder.initialize`` stores: the
decoder's sigmoid output in the 1024x1024 model frame, cropped to the part
the image covers (``input_size``) and resized bilinearly (align_corners=False)
to the original size -- torch_em's ``UNETR.postprocess_masks``, as SAM does
for its masks. The decoder's output is already at 1024 px, so of SAM's
postprocessing only the crop and the last resize remain; that is one
``F.interpolate`` on three channels, the very operation micro-sam runs
(:mod:`napari_mobilesam.engine.mask_resize` starts from the 256x256 low-res frame,
which these maps never pass through).

micro-sam encodes not the image itself but a per-channel stretch of it
(``micro_sam.util._to_image``): :func:`microsam_rgb` reproduces it, so that
``Predictor.embed(microsam_rgb(image))`` is the embedding micro-sam decodes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.embedding import ImageEmbedding
from ..errors import MobileSAMError
from ..model.instance_decoder import InstanceDecoder
from ..model.instance_decoder_inference import InstanceDecoderInference


def microsam_rgb(image) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image as micro-sam gives it to the encoder.

    Grey ``(H, W)`` or ``(H, W, 1)`` is copied to three channels, two channels
    get a zero third one, more than three keep the first three; then each
    channel is stretched from its own minimum..maximum to 0..255 in float32
    and truncated (not rounded) to uint8, as micro-sam does.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] < 1 or min(image.shape[:2]) < 1:
        raise MobileSAMError(
            f"Expected one 2D image, (H, W) or (H, W, C), got shape {image.shape}; pass one slice of a stack."
        )
    if not np.issubdtype(image.dtype, np.number) and image.dtype != bool:
        raise MobileSAMError(f"Cannot segment an image of dtype {image.dtype}; pass numbers.")
    channels = image.shape[-1]
    if channels == 1:
        image = np.repeat(image, 3, axis=-1)
    elif channels == 2:
        image = np.concatenate([image, np.zeros_like(image[..., :1])], axis=-1)
    else:
        image = image[..., :3]
    # The same float32 operations as micro-sam, in its order: the results are bit-identical.
    values = image.astype(np.float32)
    values -= values.min(axis=(0, 1))[None, None]
    values /= values.max(axis=(0, 1))[None, None] + 1e-7
    return (values * 255).astype(np.uint8)


def instance_maps(embedding: ImageEmbedding, decoder: torch.nn.Module) -> np.ndarray:
    """Foreground, centre distance and boundary distance of every pixel of the image.

    Args:
        embedding: the image's :class:`~napari_mobilesam.engine.embedding.ImageEmbedding`
            (for micro-sam's exact maps, of :func:`microsam_rgb` of the image).
        decoder: an :class:`~napari_mobilesam.model.instance_decoder.InstanceDecoder`
            (it runs on its own device; on the CPU through
            :class:`~napari_mobilesam.model.instance_decoder_inference.InstanceDecoderInference`).

    Returns:
        ``(3, H, W)`` float32 in 0..1, ``(H, W)`` = ``embedding.original_size``:
        foreground probability, distance to the object centre, distance to the
        object boundary (both normalised per object; 0 in an object's middle).
    """
    if not isinstance(embedding, ImageEmbedding):
        raise MobileSAMError(f"instance_maps needs an ImageEmbedding, got {type(embedding).__name__}.")
    parameter = next(decoder.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    input_height, input_width = embedding.input_size
    with torch.inference_mode():
        features = torch.from_numpy(embedding.features).to(device)[None]
        if isinstance(decoder, InstanceDecoder) and device.type == "cpu":
            # The same maps, restructured for a CPU (Winograd convs, folded norms, phase kernels);
            # a GPU runs the module's own forward (the restructuring is made and tested for CPUs).
            maps = InstanceDecoderInference.for_decoder(decoder)(features, embedding.input_size)
        else:
            maps = decoder(features)[..., :input_height, :input_width]
        maps = F.interpolate(maps, embedding.original_size, mode="bilinear", align_corners=False)
    return maps[0].float().cpu().numpy()
