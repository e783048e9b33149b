"""APG: micro-sam's automatic prompt generation -- the decoder's maps seed prompts, SAM draws the masks.

micro-sam 1.8.14's ``AutomaticPromptGenerator.generate``, step by step:

1. one point prompt per seed object of the maps (:mod:`.apg_prompts`);
2. the points are decoded by SAM in batches of ``batch_size`` against the one
   embedding (:meth:`Predictor.decode_low_res <napari_mobilesam.engine.predictor.Predictor.decode_low_res>`),
   one mask each, or with ``multimasking`` the best of three by predicted IoU;
   masks are the full-size logits ``> mask_threshold``;
3. ``refine_with_box_prompts``: every mask's box, extended by 1 % per side,
   is decoded again as a box prompt, and those masks replace the first ones;
4. masks with at most ``min_size`` pixels are dropped; the rest go through
   greedy NMS on their mask IoU (or intersection over the smaller area,
   ``intersection_over_min``) with ``nms_threshold``, scored by predicted IoU
   times stability score (SAM's, offset 1.0, on the full-size logits). As in
   micro-sam, two masks are compared only when their boxes (inclusive ends)
   overlap with a positive area;
5. the survivors are painted into one label image by micro-sam's rule, not
   :func:`napari_mobilesam.segment.label_image.paint_labels`'s: the largest mask is
   painted first and a mask only takes pixels no larger mask took; every
   4-connected piece of one label then becomes an object of its own, and
   pieces smaller than ``min_size`` are removed. Ours puts smaller masks on
   top; micro-sam's defaults (``min_size``, ``nms_threshold``) were chosen
   with its rule, and APG's masks each come from a separate seed, so the rule
   decides which neighbour gets a contested rim -- the same objects as
   micro-sam need the same rule.

Labels are ``1..N`` in raster order of each object's first pixel. Masks are
kept cropped to their boxes, so memory grows with the objects, not the image;
full-size logits exist for one batch at a time. :func:`segment_apg` reports
its progress per batch through a callback (a GUI worker forwards it).
Not reproduced: ``mask_threshold="auto"`` (micro-sam's local Otsu threshold)
and ``prompt_function``; differences in the prompts themselves are listed in
:mod:`.apg_prompts`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import torch

from ..engine.embedding import ImageEmbedding
from ..engine.mask_resize import resize_logits
from ..engine.prompts import Prompts, check_prompts
from ..errors import MobileSAMError
from .apg_prompts import extended_boxes, point_prompts
from .instance_params import APGParams
from .instance_watershed import check_maps
from .nms import masks_to_boxes
from .steps import run_steps

Decoder = Callable[[Prompts, bool], tuple[torch.Tensor, torch.Tensor]]
Progress = Callable[[int, int], None]
# SAM's stability score offset, which micro-sam keeps.
_STABILITY_OFFSET = 1.0


class _Masks:
    """Decoded masks, each cropped to its box: ``boxes`` ``(K, 4)`` exclusive-end pixels, ``crops``, scores."""

    def __init__(self) -> None:
        self.boxes: list[np.ndarray] = []
        self.crops: list[np.ndarray] = []
        self.areas: list[int] = []
        self.scores: list[float] = []

    def add(self, logits: torch.Tensor, iou: torch.Tensor, threshold: float) -> None:
        """Full-size logits ``(B, H, W)`` and predicted IoU ``(B,)`` of one batch."""
        masks = logits > threshold
        inner = (logits > threshold + _STABILITY_OFFSET).flatten(1).sum(1)
        outer = (logits > threshold - _STABILITY_OFFSET).flatten(1).sum(1)
        stability = torch.where(outer > 0, inner / outer.clamp(min=1), 0.0)
        boxes = masks_to_boxes(masks).to(torch.int64).cpu().numpy()
        for mask, box, score in zip(masks, boxes, (iou.float() * stability).tolist(), strict=True):
            x0, y0, x1, y1 = box
            crop = mask[y0:y1, x0:x1].cpu().numpy()
            self.boxes.append(box)
            self.crops.append(crop)
            self.areas.append(int(crop.sum()))
            self.scores.append(float(score))


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    """The intersection of two exclusive-end boxes if micro-sam would compare their masks, else ``None``.

    micro-sam's boxes have inclusive ends and count as overlapping when the
    intersection's width and height (inclusive max minus min) are both > 0:
    with exclusive ends, when it spans at least two rows and two columns.
    """
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def _intersection(found: _Masks, i: int, j: int, window) -> int:
    x0, y0, x1, y1 = window

    def part(k: int) -> np.ndarray:
        bx, by = found.boxes[k][:2]
        return found.crops[k][y0 - by : y1 - by, x0 - bx : x1 - bx]

    return int(np.count_nonzero(part(i) & part(j)))


def mask_nms(found: _Masks, candidates: list[int], threshold: float, intersection_over_min: bool) -> list[int]:
    """Greedy NMS on mask overlap: the kept indices of ``candidates``, best score first (ties: listed first)."""
    order = sorted(candidates, key=lambda k: -found.scores[k])
    kept: list[int] = []
    for j in order:
        suppressed = False
        for i in kept:
            window = _overlap(found.boxes[i], found.boxes[j])
            if window is None:
                continue
            inter = _intersection(found, i, j, window)
            if intersection_over_min:
                overlap = inter / (min(found.areas[i], found.areas[j]) + 1e-6)
            else:
                overlap = inter / max(found.areas[i] + found.areas[j] - inter, 1)
            if overlap > threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(j)
    return kept


def paint_largest_first(shape: tuple[int, int], found: _Masks, kept: list[int], min_size: int) -> np.ndarray:
    """micro-sam's label image from the kept masks (see step 5 of the module doc): ``(H, W)`` int32."""
    from skimage.measure import label

    painted = np.zeros(shape, dtype=np.int32)
    # A stable sort: among equal areas, the better-scored mask (earlier in ``kept``) is painted first.
    for number, k in enumerate(sorted(kept, key=lambda k: -found.areas[k]), start=1):
        x0, y0, x1, y1 = found.boxes[k]
        window = painted[y0:y1, x0:x1]
        window[found.crops[k] & (window == 0)] = number
    # Each 4-connected piece of one value becomes an object, numbered in raster order.
    pieces = label(painted, background=0, connectivity=1).astype(np.int32, copy=False)
    if min_size > 0 and pieces.max() > 0:
        sizes = np.bincount(pieces.ravel())
        keep = sizes >= min_size
        keep[0] = False
        lookup = np.zeros(sizes.size, dtype=np.int32)
        lookup[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.int32)
        pieces = lookup[pieces]
    return pieces


def _decode_into(found: _Masks, decoder: Decoder, prompts: Prompts, embedding: ImageEmbedding, params: APGParams):
    low_res, iou = decoder(prompts, params.multimasking)
    low_res, iou = torch.as_tensor(low_res), torch.as_tensor(iou)
    expected = (prompts.count, 3 if params.multimasking else 1)
    if tuple(low_res.shape) != (*expected, 256, 256) or tuple(iou.shape) != expected:
        raise MobileSAMError(
            f"The decoder returned logits {tuple(low_res.shape)} and IoU {tuple(iou.shape)} for {prompts.count} "
            f"prompts; expected {(*expected, 256, 256)} and {expected} (the contract of Predictor.decode_low_res)."
        )
    # multimasking: the mask with the best predicted IoU (micro-sam's reduce_multimasking).
    best = iou.argmax(dim=1)
    rows = torch.arange(prompts.count)
    with torch.inference_mode():
        logits = resize_logits(low_res[rows, best].float(), embedding.input_size, embedding.original_size)
    found.add(logits, iou[rows, best], params.logit_threshold)


def segment_apg(
    embedding: ImageEmbedding,
    maps,
    predictor=None,
    *,
    decoder: Decoder | None = None,
    progress: Progress | None = None,
    params: APGParams | None = None,
    **kwargs,
) -> np.ndarray:
    """APG: every object the maps seed, drawn by SAM from one point prompt each.

    Args:
        embedding: the image's :class:`~napari_mobilesam.engine.embedding.ImageEmbedding`.
        maps: ``(3, H, W)`` foreground, centre and boundary distance of the same
            image (:func:`~napari_mobilesam.segment.instance_maps.instance_maps`).
        predictor: a :class:`~napari_mobilesam.engine.predictor.Predictor` to decode with
            (the embedding becomes its current one).
        decoder: instead of a predictor, a callable with the contract of
            :meth:`Predictor.decode_low_res`: ``decoder(prompts, multimask_output)``
            -> ``(low_res_logits (N, C, 256, 256), iou (N, C))``, prompts in pixels
            of the image.
        progress: called as ``progress(steps_done, steps_total)`` before each batch
            of prompts and at the end (a GUI worker forwards it as its progress).
        params: :class:`~napari_mobilesam.segment.instance_params.APGParams`, or
            its fields as keywords (micro-sam's names): ``min_size=25``,
            ``center_distance_threshold=0.5``, ``boundary_distance_threshold=0.5``,
            ``foreground_threshold=0.5``, ``multimasking=False``, ``batch_size=32``,
            ``nms_threshold=0.9``, ``intersection_over_min=False``,
            ``mask_threshold=None``, ``refine_with_box_prompts=False``.

    Returns:
        ``(H, W)`` int32 labels, 0 = background, objects ``1..N`` in raster order
        of their first pixel.
    """
    if params is not None and kwargs:
        raise MobileSAMError("Give the APG settings either as params=APGParams(...) or as keywords, not both.")
    params = params if params is not None else APGParams.from_kwargs(**kwargs)
    if (predictor is None) == (decoder is None):
        raise MobileSAMError("APG decodes with a predictor or a stand-in decoder: pass exactly one of them.")
    return run_steps(apg_steps(embedding, maps, predictor, decoder=decoder, params=params), progress)


def apg_steps(
    embedding: ImageEmbedding, maps, predictor=None, *, decoder: Decoder | None = None, params: APGParams
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Generator: :func:`segment_apg`, yielding ``(steps done, steps in total)`` between prompt batches; returns
    the labels. For a GUI worker, which can stop it between two batches; ``predictor`` or ``decoder`` decodes."""
    if not isinstance(embedding, ImageEmbedding):
        raise MobileSAMError(f"APG needs the image's ImageEmbedding, got {type(embedding).__name__}.")
    maps = check_maps(maps)
    shape = tuple(embedding.original_size)
    if maps.shape[1:] != shape:
        raise MobileSAMError(
            f"The maps (shape {maps.shape[1:]}) are not of the embedding's image (size {shape}); "
            "compute them with instance_maps(embedding, decoder) of the same embedding."
        )
    if decoder is None:
        if predictor.embedding is not embedding:
            predictor.set_embedding(embedding)
        decoder = predictor.decode_low_res

    points = point_prompts(
        maps, params.foreground_threshold, params.center_distance_threshold, params.boundary_distance_threshold
    )
    count = len(points)
    batches = [slice(start, min(start + params.batch_size, count)) for start in range(0, count, params.batch_size)]
    rounds = 2 if params.refine_with_box_prompts else 1
    total = len(batches) * rounds + 1
    found = _Masks()
    for step in range(len(batches) * rounds):
        if step == len(batches):  # the second round: every mask's box replaces its point
            boxes, found = extended_boxes(np.array(found.boxes), shape), _Masks()
        batch = batches[step % len(batches)]
        yield step, total
        if step < len(batches):
            prompts = check_prompts(points[batch, None], np.ones((batch.stop - batch.start, 1)), None, None, shape)
        else:
            prompts = check_prompts(None, None, boxes[batch], None, shape)
        _decode_into(found, decoder, prompts, embedding, params)

    yield total - 1, total
    large = [k for k in range(count) if found.areas[k] > params.min_size]
    kept = mask_nms(found, large, params.nms_threshold, params.intersection_over_min)
    labels = paint_largest_first(shape, found, kept, params.min_size)
    yield total, total
    return labels
