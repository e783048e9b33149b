"""Box proposals for the ``boxes`` sampler of :func:`~napari_mobilesam.segment.everything.segment_everything`.

The ``boxes`` sampler (MobileSAMv2's idea) prompts SAM with one box per
likely object instead of a dense grid of points, so a few hundred prompts
replace a thousand. Where the boxes come from is pluggable.

The proposer contract
---------------------
A proposer is any callable ``proposer(image) -> boxes``:

- ``image``: ``(H, W, 3)`` uint8 RGB, the image as the model sees it (after
  the contrast mapping of :mod:`napari_mobilesam.engine.preprocessing`);
- ``boxes``: ``(N, 4)`` array of ``(x0, y0, x1, y1)`` pixel coordinates of
  that image, best first; ``N`` may be 0. Boxes are clipped to the image.

Plugging in a trained detector
------------------------------
MobileSAMv2 proposes boxes with an object-aware YOLOv8 model
(``ObjectAwareModel.pt``, run through ``ultralytics``). Any detector fits
the contract through a small wrapper, for example::

    from ultralytics import YOLO

    detector = YOLO("ObjectAwareModel.pt")

    def yolo_boxes(image):
        result = detector(image, imgsz=1024, conf=0.4, iou=0.9, verbose=False)[0]
        return result.boxes.xyxy.cpu().numpy()       # best first

    labels = segment_everything(image, sampler="boxes", proposer=yolo_boxes)

The built-in proposer
---------------------
:class:`ForegroundBoxProposer` needs no weights and suits fluorescence-like
images (objects brighter, or darker, than their surroundings): the
foreground is thresholded at a few global levels around Otsu's threshold
and once with a local (adaptive) threshold; each foreground is split into
objects by a watershed on its distance transform; objects that stand out
from the pixels around them by less than ``min_contrast`` times the image's
noise are dropped (so an empty slice of a stack gives no boxes); boxes found
at several thresholds score higher, near-duplicates are merged by box NMS,
and the best ``max_boxes`` are returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage as ndi

from ..errors import MobileSAMError

MAX_BOXES = 320


class BoxProposer(Protocol):
    """``(H, W, 3)`` uint8 RGB image -> ``(N, 4)`` ``(x0, y0, x1, y1)`` pixel boxes, best first."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ForegroundBoxProposer:
    """Boxes of thresholded, watershed-split objects: no weights, made for microscopy.

    Attributes:
        polarity: ``"bright"`` objects on a dark background (fluorescence),
            ``"dark"`` objects on a bright one (brightfield, histology), or
            ``"auto"``: the side of Otsu's threshold that covers less of the image.
        global_levels: multiples of Otsu's threshold to cut the image at.
        block_size: side in pixels of the neighbourhood of the local threshold
            (odd; about twice the diameter of an object); 0 turns it off.
        smoothing: sigma in pixels of the Gaussian applied before thresholding.
        min_distance: minimal distance in pixels between two object centres
            when splitting touching objects.
        min_area: smallest object area in pixels.
        max_boxes: at most this many boxes, best first.
        merge_iou: boxes overlapping a better one by more than this are merged away.
        min_contrast: an object must stand out from the pixels around it by at
            least this many times the image's noise level (estimated from the
            differences of neighbouring pixels), so a slice of pure noise gives
            no boxes instead of hundreds. Blobs of pure noise reach ~1; the
            nuclei of the StarDist test images 1.5 and more. 0 keeps every object.
    """

    polarity: str = "auto"
    global_levels: tuple[float, ...] = (0.7, 0.85, 1.0)
    block_size: int = 51
    smoothing: float = 1.0
    min_distance: int = 3
    min_area: int = 16
    max_boxes: int = MAX_BOXES
    merge_iou: float = 0.7
    min_contrast: float = 1.2

    def __post_init__(self) -> None:
        if self.polarity not in ("auto", "bright", "dark"):
            raise MobileSAMError(f"polarity must be 'auto', 'bright' or 'dark', got {self.polarity!r}.")
        if self.block_size and (self.block_size < 3 or self.block_size % 2 == 0):
            raise MobileSAMError(f"block_size must be an odd number >= 3 (or 0 for none), got {self.block_size}.")
        if self.max_boxes < 0:
            raise MobileSAMError(f"max_boxes must be >= 0, got {self.max_boxes}.")
        if not self.min_contrast >= 0:
            raise MobileSAMError(f"min_contrast must be >= 0 (0 keeps every object), got {self.min_contrast}.")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` or ``(H, W, 3)`` image -> ``(N, 4)`` float32 boxes ``(x0, y0, x1, y1)``, best first."""
        import torch
        from skimage.filters import threshold_local, threshold_otsu

        from .nms import box_iou, nms

        grey = np.asarray(image, dtype=np.float32)
        if grey.ndim == 3:
            grey = grey[..., :3].mean(axis=-1)
        if grey.ndim != 2:
            raise MobileSAMError(f"The box proposer expects one 2D image (H, W) or (H, W, 3), got shape {grey.shape}.")
        noise = noise_level(grey)
        if self.smoothing > 0:
            grey = ndi.gaussian_filter(grey, self.smoothing)
        if grey.max() <= grey.min() or self.max_boxes == 0:
            return np.zeros((0, 4), dtype=np.float32)
        otsu = threshold_otsu(grey)
        if self.polarity == "dark" or (self.polarity == "auto" and np.mean(grey > otsu) > 0.5):
            grey = grey.max() - grey
            otsu = threshold_otsu(grey)
        low = grey.min()

        foregrounds = [grey > low + level * (otsu - low) for level in self.global_levels]
        if self.block_size:
            local = threshold_local(grey, self.block_size, offset=-0.01 * (grey.max() - low))
            # Above its neighbourhood and not in the darkest background.
            foregrounds.append((grey > local) & (grey > low + 0.5 * (otsu - low)))
        boxes = np.concatenate([self._object_boxes(foreground, grey, noise) for foreground in foregrounds])
        if len(boxes) == 0:
            return np.zeros((0, 4), dtype=np.float32)

        boxes_t = torch.from_numpy(boxes)
        # A box seen at several thresholds is a stable object: its support counts the near-identical boxes.
        support = (box_iou(boxes_t, boxes_t) > self.merge_iou).sum(dim=1).float()
        keep = nms(boxes_t, support, self.merge_iou)[: self.max_boxes]
        return boxes[keep.numpy()]

    def _object_boxes(self, foreground: np.ndarray, grey: np.ndarray, noise: float) -> np.ndarray:
        """Boxes of the objects of one foreground, touching ones split by a distance-transform watershed.

        ``grey``: the (smoothed, bright-objects) image; objects whose mean stands
        out from the ring of pixels around them by less than ``min_contrast *
        noise`` are dropped.
        """
        from skimage.feature import peak_local_max
        from skimage.segmentation import watershed

        foreground = ndi.binary_opening(foreground)
        components, count = ndi.label(foreground)
        if count == 0:
            return np.zeros((0, 4), dtype=np.float32)
        distance = ndi.gaussian_filter(ndi.distance_transform_edt(foreground), 1.0)
        peaks = peak_local_max(distance, min_distance=self.min_distance, labels=components, exclude_border=False)
        markers = np.zeros(components.shape, dtype=np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        objects = watershed(-distance, markers, mask=foreground)
        areas = np.bincount(objects.ravel())
        keep = areas >= self.min_area
        if self.min_contrast > 0 and noise > 0:
            ids = np.arange(1, len(areas))
            inside = np.asarray(ndi.mean(grey, objects, ids))
            # The ring: background pixels within 3 px of the object (dilation of the label image).
            ring = np.where(objects > 0, 0, ndi.grey_dilation(objects, size=(7, 7)))
            with np.errstate(invalid="ignore"):  # an object without ring pixels: contrast 0
                around = np.asarray(ndi.mean(grey, ring, ids))
            contrast = np.nan_to_num(inside - around, nan=0.0)
            keep[1:] &= contrast >= self.min_contrast * noise
        boxes = [
            (found[1].start, found[0].start, found[1].stop, found[0].stop)
            for index, found in enumerate(ndi.find_objects(objects), start=1)
            if found is not None and keep[index]
        ]
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def noise_level(image: np.ndarray) -> float:
    """Standard deviation of an image's pixel noise, from the differences of neighbouring pixels.

    The median absolute difference of horizontal and vertical neighbours,
    scaled to a Gaussian's standard deviation: objects and edges cover few
    pixels and barely move the median. 0 for a noiseless (e.g. flat) image.
    """
    image = np.asarray(image, dtype=np.float32)
    if min(image.shape) < 2:
        return 0.0
    differences = np.concatenate([np.abs(np.diff(image, axis=0)).ravel(), np.abs(np.diff(image, axis=1)).ravel()])
    return float(np.median(differences) / (0.6745 * np.sqrt(2)))


def propose_boxes(image: np.ndarray, **options) -> np.ndarray:
    """Boxes of :class:`ForegroundBoxProposer` with ``options`` (its attributes) for one image."""
    return ForegroundBoxProposer(**options)(image)


class RememberingProposer:
    """A proposer that remembers its boxes for images it has seen (by a hash of their pixels).

    Segmenting a slice again (a second run of a stack, "this slice" after a
    change of thresholds) then skips the proposer as the embedding cache skips
    the encoder. Thread-safe; keeps the boxes of the last ``max_images`` images.
    """

    def __init__(self, proposer: BoxProposer, max_images: int = 4096) -> None:
        import threading
        from collections import OrderedDict

        self.proposer = proposer
        self.max_images = max_images
        self.calls = 0  # images the wrapped proposer actually saw
        self._boxes: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import hashlib

        image = np.ascontiguousarray(image)
        digest = hashlib.blake2b(image.data, digest_size=16)
        digest.update(f"{image.shape}{image.dtype.str}".encode())
        key = digest.hexdigest()
        with self._lock:
            if key in self._boxes:
                self._boxes.move_to_end(key)
                return self._boxes[key].copy()
        boxes = np.asarray(self.proposer(image))
        with self._lock:
            self.calls += 1
            self._boxes[key] = boxes.copy()
            while len(self._boxes) > self.max_images:
                self._boxes.popitem(last=False)
        return boxes
