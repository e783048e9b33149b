"""Run the predictor on the objects of one plane (pure: numpy, torch and the core predictor, no napari).

One object is decoded with three candidate masks (the user can cycle them)
and may refine the previous result through ``mask_input``; several objects
are decoded in batches of one mask each. Every candidate is resized to full
resolution where the decode runs (0.6 ms each on a 512x512 plane), so that
cycling through them on a GUI's thread runs no torch (see
:mod:`~napari_mobilesam.engine.compute_thread`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.prompts import check_prompts
from .labels_painter import masks_to_label_image
from .prompt_objects import ObjectPrompt, decode_groups


@dataclass(eq=False)
class Decoded:
    """The mask candidates of every object on a plane.

    ``low_res`` ``(N, C, 256, 256)`` logits and ``iou`` ``(N, C)``, ``C`` = 3 for a single
    object and 1 for several; ``chosen`` ``(N,)``: the candidate shown for each object
    (highest predicted IoU unless the user cycled). ``input_size``/``original_size``/``threshold``
    turn logits into ``(H, W)`` masks of the plane.
    """

    low_res: np.ndarray
    iou: np.ndarray
    chosen: np.ndarray
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    threshold: float = 0.0
    _full: dict = field(default_factory=dict, repr=False)

    def candidate(self, index: int, which: int) -> np.ndarray:
        """``(H, W)`` bool mask of candidate ``which`` of object ``index`` (resized on first use)."""
        key = (int(index), int(which))
        if key not in self._full:
            import torch

            from ..engine.mask_resize import resize_logits

            with torch.inference_mode():
                logits = resize_logits(torch.from_numpy(self.low_res[key]), self.input_size, self.original_size)
            self._full[key] = (logits > self.threshold).numpy()
        return self._full[key]

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool: the chosen mask of each object."""
        return np.stack([self.candidate(i, c) for i, c in enumerate(self.chosen)])

    @property
    def candidates(self) -> np.ndarray:
        """``(N, C, H, W)`` bool: every candidate (resizes them all)."""
        n, c = self.iou.shape
        return np.stack([np.stack([self.candidate(i, j) for j in range(c)]) for i in range(n)])

    @property
    def chosen_low_res(self) -> np.ndarray:
        """``(N, 1, 256, 256)`` logits of the chosen masks, to feed back as ``mask_input``."""
        return self.low_res[np.arange(len(self.chosen)), self.chosen][:, None]

    def cycled(self) -> Decoded:
        """The same result showing each object's next candidate."""
        count = self.iou.shape[1]
        return Decoded(
            self.low_res,
            self.iou,
            (self.chosen + 1) % count,
            self.input_size,
            self.original_size,
            self.threshold,
            self._full,
        )

    def label_image(self) -> np.ndarray:
        """``(H, W)`` image: object ``i`` painted as ``i + 1`` (later objects on top), as previewed and accepted."""
        return masks_to_label_image(self.masks)


def _decode(predictor, point_coords, point_labels, box, mask_input, multimask: bool):
    prompts = check_prompts(point_coords, point_labels, box, mask_input, predictor.original_size)
    low_res, iou = predictor.decode_low_res(prompts, multimask)
    return low_res.cpu().numpy(), iou.cpu().numpy()


def decode_objects(predictor, objects: list[ObjectPrompt], mask_input: np.ndarray | None = None) -> Decoded:
    """Masks for ``objects`` on the predictor's current image; every candidate is resized already.

    ``mask_input``: ``(1, 256, 256)`` logits of the previous result for a single object, or None.
    """
    sizes = (tuple(predictor.input_size), tuple(predictor.original_size), float(predictor.model.mask_threshold))
    if len(objects) == 1:
        obj = objects[0]
        low_res, iou = _decode(
            predictor,
            obj.point_coords[None] if obj.n_points else None,
            obj.point_labels[None] if obj.n_points else None,
            obj.box[None] if obj.box is not None else None,
            mask_input[None] if mask_input is not None else None,
            multimask=True,
        )
        decoded = Decoded(low_res, iou, np.array([int(np.argmax(iou[0]))]), *sizes)
    else:
        low_res = np.zeros((len(objects), 1, 256, 256), dtype=np.float32)
        iou = np.zeros((len(objects), 1), dtype=np.float32)
        for group in decode_groups(objects):
            members = [objects[i] for i in group]
            with_points = members[0].n_points > 0
            low_res[group], iou[group] = _decode(
                predictor,
                np.stack([m.point_coords for m in members]) if with_points else None,
                np.stack([m.point_labels for m in members]) if with_points else None,
                np.stack([m.box for m in members]) if members[0].box is not None else None,
                None,
                multimask=False,
            )
        decoded = Decoded(low_res, iou, np.zeros(len(objects), dtype=int), *sizes)
    decoded.candidates  # resize them here, in the caller's thread  # noqa: B018
    return decoded
