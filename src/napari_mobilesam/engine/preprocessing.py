"""From a microscopy image to the model's input: 8-bit RGB, resized, normalised, padded.

The model was trained on 8-bit RGB photographs, so every image is first shown
to it the way a person would see it on screen:

- ``uint8`` colour images ``(H, W, 3|4)`` are used as they are (the official
  contract; alpha is dropped);
- everything else (grey images, 16-bit, float, bool, other integers) is mapped
  linearly to 0..255 by ``contrast_limits`` -- pass the napari layer's, and the
  model sees what the user sees -- or, without them, by the 1st and 99.8th
  percentiles of the finite values. NaN and -inf map to 0, +inf to 255, a
  constant image to 0;
- grey is copied to three channels.

A model trained otherwise says so (its ``input_normalization``, from the
registry, :mod:`napari_mobilesam.engine.model_registry`): micro-sam's models
saw every image stretched channel by channel from its minimum to its maximum
(``"min-max"``), so without contrast limits they get exactly that
(:func:`to_model_rgb`, micro-sam's own arithmetic); with contrast limits (the
widget passes the layer's) the limits win for every model, so the model sees
what the user sees.

Then the longest side is resized to 1024 px with Pillow's antialiased
bilinear filter (exactly the official resize), and the model normalises and
pads it (:meth:`MobileSAM.preprocess`).

Extreme shapes:

- **thin planes** (a line scan of 1 x 5000 pixels): the official arithmetic
  ``int(side * scale + 0.5)`` rounds the short side to 0 pixels, which no
  resize can make; here it is at least 1 pixel (:func:`preprocess_shape`),
  the same result wherever the official rounding gives 1 or more. 1 x 1 is
  scaled up to 1024 x 1024, as officially;
- **huge planes**: more than :data:`MAX_PLANE_PIXELS` in one plane is refused
  from its shape alone, before any pixel is read (:func:`check_plane_size`),
  so a lazy 20000 x 20000 array is never loaded: the model would see it
  20 times smaller, and its full-size masks and labels would not fit in a laptop's memory.
"""

from __future__ import annotations

import numpy as np

from ..errors import MobileSAMError

TARGET_LENGTH = 1024
ROBUST_PERCENTILES = (1.0, 99.8)
# Percentiles of larger images are estimated on a regular subsample.
PERCENTILE_SAMPLE_PIXELS = 4_000_000
# 2**27 pixels, e.g. 11585 x 11585 or 16384 x 8192: segmenting one plane then takes a few GB
# (its float copy, the RGB input, full-size masks and labels); the model sees it >= 11x smaller.
MAX_PLANE_PIXELS = 2**27


def preprocess_shape(height: int, width: int, target_length: int = TARGET_LENGTH) -> tuple[int, int]:
    """``(h, w)`` after scaling the longest side to ``target_length``: official rounding, each side at least 1."""
    scale = target_length * 1.0 / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def check_plane_size(height: int, width: int) -> None:
    """Refuse a plane of more than :data:`MAX_PLANE_PIXELS` pixels, from its shape (nothing is read)."""
    height, width = int(height), int(width)
    if height * width > MAX_PLANE_PIXELS:
        shrink = max(height, width) / TARGET_LENGTH
        raise MobileSAMError(
            f"The image plane is {height} x {width} pixels ({height * width / 1e6:.0f} million), more than the "
            f"{MAX_PLANE_PIXELS / 1e6:.0f} million napari-mobilesam segments at once: MobileSAM sees a plane at "
            f"{TARGET_LENGTH} pixels on its longest side, so {shrink:.0f} pixels here would become one. Crop or "
            "downsample it (or open a lower level of its multiscale pyramid) and segment that."
        )


def check_image_size(image) -> None:
    """:func:`check_plane_size` of a 2D image ``(H, W[, C])`` from its ``shape`` alone: call it before reading a lazy one."""
    shape = tuple(getattr(image, "shape", None) or np.shape(image))
    if len(shape) in (2, 3) and 0 not in shape[:2]:
        check_plane_size(*shape[:2])


def _check_image(image) -> np.ndarray:
    check_image_size(image)  # before np.asarray reads a lazy (dask, zarr) plane
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4)):
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise MobileSAMError(f"The image is empty (shape {image.shape}); pass an image with at least one pixel.")
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
            raise MobileSAMError(f"Cannot segment an image of dtype {image.dtype}; pass numbers (int, float or bool).")
        if np.iscomplexobj(image):
            raise MobileSAMError("Cannot segment a complex-valued image; pass its magnitude (np.abs) instead.")
        return image
    raise MobileSAMError(
        f"Expected one 2D image of shape (H, W) or (H, W, 3|4), got shape {image.shape}. "
        "For a stack, pass one slice (e.g. stack[z]) or use segment_stack."
    )


def check_contrast_limits(contrast_limits) -> tuple[float, float] | None:
    """``(low, high)`` as two floats (``None`` stays ``None``), or one clear error."""
    if contrast_limits is None:
        return None
    try:
        low, high = (float(v) for v in contrast_limits)
    except (TypeError, ValueError):
        raise MobileSAMError(f"contrast_limits must be two numbers (low, high), got {contrast_limits!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high)):
        raise MobileSAMError(f"contrast_limits must be two finite numbers, got {contrast_limits!r}.")
    if high < low:
        raise MobileSAMError(f"contrast_limits must be (low, high) with low <= high, got {contrast_limits!r}.")
    return low, high


def robust_contrast_limits(image: np.ndarray) -> tuple[float, float]:
    """The 1st and 99.8th percentiles of the finite values of ``image``."""
    sample = image
    if sample.size > PERCENTILE_SAMPLE_PIXELS:
        step = int(np.ceil(np.sqrt(sample.size / PERCENTILE_SAMPLE_PIXELS)))
        sample = sample[::step, ::step]
    sample = sample.astype(np.float64, copy=False).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(sample, ROBUST_PERCENTILES)
    return float(low), float(high)


def to_uint8_rgb(image, contrast_limits: tuple[float, float] | None = None) -> np.ndarray:
    """Map a 2D grey or colour image to ``(H, W, 3)`` uint8 as described in the module doc."""
    image = _check_image(image)
    if image.ndim == 3:
        image = image[..., :3]
        if image.dtype == np.uint8 and contrast_limits is None:
            return np.ascontiguousarray(image)
    if image.dtype == bool:
        grey = image.astype(np.uint8) * 255
    else:
        if contrast_limits is None:
            low, high = robust_contrast_limits(image)
        else:
            low, high = check_contrast_limits(contrast_limits)
        values = image.astype(np.float64)
        values = np.nan_to_num(values, nan=low, posinf=np.inf, neginf=-np.inf)
        if high > low:
            values = (values - low) / (high - low)
        else:
            values = (values > low).astype(np.float64)
        grey = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if grey.ndim == 2:
        grey = np.repeat(grey[..., None], 3, axis=-1)
    return np.ascontiguousarray(grey)


def to_model_rgb(image, contrast_limits: tuple[float, float] | None = None, normalization: str = "percentiles"):
    """``(H, W, 3)`` uint8 as the encoder of a model trained with ``normalization`` should see ``image``.

    With ``contrast_limits``, or ``normalization="percentiles"``: :func:`to_uint8_rgb`.
    ``"min-max"`` without limits: micro-sam's per-channel minimum..maximum stretch
    (:func:`~napari_mobilesam.segment.instance_maps.microsam_rgb`), after NaN and
    -inf are set to the smallest finite value and +inf to the largest.
    """
    if contrast_limits is not None or normalization == "percentiles":
        return to_uint8_rgb(image, contrast_limits)
    if normalization != "min-max":
        raise MobileSAMError(f"Unknown input normalization {normalization!r}; use 'percentiles' or 'min-max'.")
    from ..segment.instance_maps import microsam_rgb

    image = _check_image(image)
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        finite = image[np.isfinite(image)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        image = np.nan_to_num(image, nan=low, posinf=high, neginf=low)
    return microsam_rgb(image)


def resize_longest_side(rgb: np.ndarray, target_length: int = TARGET_LENGTH) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 so its longest side is ``target_length`` (Pillow bilinear)."""
    from PIL import Image

    height, width = rgb.shape[:2]
    new_h, new_w = preprocess_shape(height, width, target_length)
    if (new_h, new_w) == (height, width):
        return rgb
    resized = Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR)
    return np.array(resized)  # writable, so torch can wrap it without a warning


def apply_coords(coords: np.ndarray, original_size: tuple[int, int], target_length: int = TARGET_LENGTH) -> np.ndarray:
    """Scale ``(..., 2)`` ``(x, y)`` pixel coordinates of the original image to the model input."""
    old_h, old_w = original_size
    new_h, new_w = preprocess_shape(old_h, old_w, target_length)
    coords = np.array(coords, dtype=np.float64, copy=True)
    coords[..., 0] *= new_w / old_w
    coords[..., 1] *= new_h / old_h
    return coords


def apply_boxes(boxes: np.ndarray, original_size: tuple[int, int], target_length: int = TARGET_LENGTH) -> np.ndarray:
    """Scale ``(..., 4)`` ``(x0, y0, x1, y1)`` boxes to the model input."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return apply_coords(boxes.reshape(-1, 2, 2), original_size, target_length).reshape(boxes.shape)
