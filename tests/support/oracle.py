"""A stand-in for MobileSAM's decoder made from ground-truth labels, and how much of the truth a result recovers.

The oracle returns low-res logits of the object under each point prompt (or
best matching each box), plus smaller and larger variants, with noise, so that
every other step of segment-everything runs as it does with the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_mobilesam.engine.preprocessing import preprocess_shape
from napari_mobilesam.engine.prompts import Prompts
from napari_mobilesam.segment.nms import box_iou

LOW = 256


class OracleDecoder:
    """Low-res logits from ground-truth labels, with the contract of ``Predictor.decode_low_res``.

    Logits are a steep signed distance to an outline (positive inside) plus
    noise, sampled at the centres of the low-res pixels of the model frame
    (image resized so its longest side is 1024, then /4, padded to 256x256).

    A point prompt on an object gets three masks, small to large as SAM
    orders them: the object shrunk (predicted IoU 0.8), the object (0.95)
    and the object's clump -- the object with its touching neighbours, a
    little grown. The clump's predicted IoU is low for most objects, high
    but blurred (unstable) for every fifth, and high and sharp for another
    fifth, so that it reaches the label image under its members. A point on
    the background gets the background (low IoU) and two empty masks (high
    IoU). A box gets one mask: the object whose box matches it best.
    """

    slope = 24.0  # logits per pixel of signed distance
    far = -20.0
    noise = 0.5  # standard deviation of the logits' noise

    def __init__(self, labels: np.ndarray, seed: int = 0) -> None:
        self.labels = labels
        self.rng = np.random.default_rng(seed)
        height, width = labels.shape
        input_size = preprocess_shape(height, width)
        # Centre of low-res pixel i: model-input pixel 4i + 1.5 -> original pixel coordinate.
        self.centre_y = (4 * np.arange(LOW) + 2) * height / input_size[0] - 0.5
        self.centre_x = (4 * np.arange(LOW) + 2) * width / input_size[1] - 0.5
        self.ids = np.unique(labels)[1:]
        self.found = ndi.find_objects(labels)
        self.boxes = np.array([self._box([i]) for i in self.ids], dtype=np.float64)
        areas = np.bincount(labels.ravel())
        self.radius = {int(i): math.sqrt(areas[i] / math.pi) for i in self.ids}
        self.objects = {int(i): self._sample([int(i)]) for i in self.ids}
        self.clumps = {int(i): self._sample(self._members(int(i)), grow=2) for i in self.ids}
        valid = [math.ceil(n / 4) for n in input_size]
        rows = np.clip(np.round(self.centre_y[: valid[0]]).astype(int), 0, height - 1)
        cols = np.clip(np.round(self.centre_x[: valid[1]]).astype(int), 0, width - 1)
        self.background = np.full((LOW, LOW), self.far, dtype=np.float32)
        self.background[: valid[0], : valid[1]] = np.where(labels[np.ix_(rows, cols)] == 0, 10.0, -10.0)

    def _box(self, members: list[int]) -> list[int]:
        """``(x0, y0, x1, y1)`` around the objects ``members``."""
        found = [self.found[i - 1] for i in members]
        return [
            min(f[1].start for f in found),
            min(f[0].start for f in found),
            max(f[1].stop for f in found),
            max(f[0].stop for f in found),
        ]

    def _members(self, index: int) -> list[int]:
        """The object and the objects within 3 pixels of it."""
        x0, y0, x1, y1 = self._box([index])
        y0, x0 = max(y0 - 3, 0), max(x0 - 3, 0)
        window = self.labels[y0 : y1 + 3, x0 : x1 + 3]
        near = ndi.binary_dilation(window == index, iterations=3)
        return sorted({index, *(int(i) for i in np.unique(window[near]) if i)})

    def _sample(self, members: list[int], grow: int = 0):
        """Signed distance to the outline of ``members`` (grown by ``grow`` pixels) at the low-res pixels near it."""
        height, width = self.labels.shape
        margin = int(0.5 * max(self.radius[i] for i in members)) + 6 + grow
        x0, y0, x1, y1 = self._box(members)
        y0, y1, x0, x1 = max(y0 - margin, 0), min(y1 + margin, height), max(x0 - margin, 0), min(x1 + margin, width)
        mask = np.isin(self.labels[y0:y1, x0:x1], members)
        if grow:
            mask = ndi.binary_dilation(mask, iterations=grow)
        # Pixel centres lie half a pixel from the outline: +-0.5 on either side of it. Half of the
        # low-res centres fall on pixel edges, where the outline runs: the outline is moved out by
        # a tenth of a pixel so that they are not all undecided (a real decoder has no such ties).
        distance = np.where(mask, ndi.distance_transform_edt(mask), -ndi.distance_transform_edt(~mask))
        distance -= 0.5 * np.sign(distance) - 0.1
        iy = np.flatnonzero((self.centre_y >= y0) & (self.centre_y <= y1 - 1))
        ix = np.flatnonzero((self.centre_x >= x0) & (self.centre_x <= x1 - 1))
        grid = np.meshgrid(self.centre_y[iy] - y0, self.centre_x[ix] - x0, indexing="ij")
        sampled = ndi.map_coordinates(distance, grid, order=1, mode="nearest")
        return (slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1)), sampled

    def _paint(self, out: np.ndarray, window, shift: float = 0.0, slope: float | None = None) -> None:
        where, distance = window
        values = (slope or self.slope) * (distance + shift) + self.rng.normal(0.0, self.noise, distance.shape)
        out[where] = np.clip(values, self.far, -self.far)

    def _three(self, out: np.ndarray, index: int) -> list[float]:
        if index == 0:
            out[0] = self.background
            return [0.6, 0.9, 0.9]
        kind = index % 5
        self._paint(out[0], self.objects[index], shift=-0.3 * self.radius[index])
        self._paint(out[1], self.objects[index])
        self._paint(out[2], self.clumps[index], slope=0.5 if kind == 0 else None)
        return [0.8, 0.95, 0.92 if kind == 0 else 0.91 if kind == 1 else 0.75]

    def __call__(self, prompts: Prompts, multimask_output: bool = True):
        height, width = self.labels.shape
        count = prompts.count
        out = np.full((count, 3 if multimask_output else 1, LOW, LOW), self.far, dtype=np.float32)
        ious = []
        if prompts.point_coords is not None:
            assert multimask_output and prompts.boxes is None and (prompts.point_labels == 1).all()
            for k, (x, y) in enumerate(prompts.point_coords[:, 0]):
                row, col = min(max(round(y), 0), height - 1), min(max(round(x), 0), width - 1)
                ious.append(self._three(out[k], int(self.labels[row, col])))
        else:
            assert not multimask_output
            overlap = box_iou(torch.from_numpy(prompts.boxes), torch.from_numpy(self.boxes)).numpy()
            for k, row in enumerate(overlap):
                best = int(np.argmax(row))
                if row[best] >= 0.2:
                    self._paint(out[k, 0], self.objects[int(self.ids[best])])
                    ious.append([0.93])
                else:
                    ious.append([0.5])
        iou = np.array(ious) + self.rng.uniform(-0.01, 0.01, (count, 1))
        return torch.from_numpy(out), torch.from_numpy(iou).float()


def recovered_fraction(truth: np.ndarray, labels: np.ndarray, min_iou: float = 0.9) -> float:
    """Fraction of the true objects matched by a label with IoU >= ``min_iou``."""
    n_true, n_found = int(truth.max()) + 1, int(labels.max()) + 1
    pairs = truth.astype(np.int64).ravel() * n_found + labels.ravel()
    intersection = np.bincount(pairs, minlength=n_true * n_found).reshape(n_true, n_found)
    union = intersection.sum(1)[:, None] + intersection.sum(0)[None, :] - intersection
    iou = intersection / np.maximum(union, 1)
    ids = np.unique(truth)[1:]
    return float((iou[ids, 1:].max(axis=1) >= min_iou).mean()) if n_found > 1 else 0.0
