"""Segment everything: prompt the whole image, keep the good and distinct masks, paint one label image.

Four samplers: ``"ais"`` and ``"apg"`` run micro-sam's instance decoder on
the embedding (:mod:`napari_mobilesam.segment.instance_everything`; models
that have one, such as ``vit_t_lm``). Two choose prompts for SAM alone:

- ``"grid"``: SAM's automatic mask generator. A ``points_per_side`` x
  ``points_per_side`` grid of single-point prompts, three candidate masks
  each. Parameters carry SAM's names and defaults (:class:`EverythingParams`),
  so settings from ``SamAutomaticMaskGenerator`` carry over (image crops,
  ``crop_n_layers``, are not supported).
- ``"boxes"``: MobileSAMv2's idea. One box prompt per likely object, from a
  pluggable proposer (:mod:`napari_mobilesam.segment.box_proposals`), one mask each.

Both run the same lean pipeline:

1. prompts are decoded in batches against one shared embedding (the image
   side of the decoder is prepared once, never copied per prompt) into
   ``(B, C, 256, 256)`` low-res logits and predicted IoUs;
2. at low resolution, cropped to the part that covers the image: masks are
   kept if their predicted IoU > ``pred_iou_thresh``, their stability score
   >= ``stability_score_thresh`` and they are not empty; their boxes are
   taken there too;
3. box NMS (``box_nms_thresh``, predicted IoU as score) over all batches;
4. only the survivors are brought to full size, each inside its own box;
5. ``min_mask_region_area`` > 0: SAM's cleanup of small holes and islands,
   then NMS again preferring masks the cleanup did not change;
6. the masks are painted into one label image (the overlap rule is in
   :mod:`napari_mobilesam.segment.label_image`: smaller masks on top, ids in raster
   order of each object's first pixel), so output is stable across runs.

Differences to SAM's generator, all for speed: the stability score and the
NMS boxes are computed on the 256x256 logits instead of full-size ones, and
boxes have exclusive ends (see :mod:`napari_mobilesam.segment.nms`). The predicted IoU
comes before the masks in the decoder, so a prompt whose masks all fail
``pred_iou_thresh`` skips the mask head (about half of its decoding).

The decoding step is a parameter: ``decoder`` takes any callable with the
contract of :meth:`Predictor.decode_low_res <napari_mobilesam.engine.predictor.Predictor.decode_low_res>`,
e.g. a stand-in for tests; the image is then not encoded at all.

The settings live in :mod:`napari_mobilesam.segment.params`, the prompts
(point grid, proposed boxes, batches) and the checks on the decoder's output
in :mod:`napari_mobilesam.segment.prompt_sampling`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..engine.embedding import ImageEmbedding
from ..engine.preprocessing import check_image_size, preprocess_shape, to_uint8_rgb
from ..engine.prompts import Prompts
from ..errors import MobileSAMError
from .label_image import MASK_THRESHOLD, LowResFrame, paint_labels, remove_small_regions, tighten
from .nms import masks_to_boxes, nms
from .params import INSTANCE_SAMPLERS, sampler_settings
from .prompt_sampling import (
    box_prompts,
    check_boxes,
    check_decoded,
    default_proposer,
    point_grid,
    point_prompts,
    prompt_batches,
)
from .steps import run_steps

Decoder = Callable[[Prompts, bool], tuple[torch.Tensor, torch.Tensor]]
# Prompts decoded at once on a CPU, between two chances to stop (a batch of 64 takes ~0.5 s on 2 cores,
# 16 take as long per prompt: 1.91 against 1.88 s for 256 grid points).
STOP_EVERY = 16
Progress = Callable[[int, int], None]


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks ``logits > threshold + offset`` and ``logits > threshold - offset``, over the last two axes.

    The first mask lies inside the second (for ``offset >= 0``), so the IoU is
    the ratio of their areas; 0 when both are empty.
    """
    inner = _area(logits > threshold + offset)
    outer = _area(logits > threshold - offset)
    return torch.where(outer > 0, inner / outer.clamp(min=1), 0.0)


def _area(masks: torch.Tensor) -> torch.Tensor:
    """Pixels of ``(..., H, W)`` boolean masks; narrow row sums first, much faster than summing bools to int64."""
    row_type = torch.int16 if masks.shape[-1] < 2**15 else torch.int32
    return masks.sum(dim=-1, dtype=row_type).sum(dim=-1, dtype=torch.int32)


@dataclass
class _Candidates:
    """Masks that passed the low-res filters, before NMS."""

    logits: list[torch.Tensor]  # (K, h, w) float16 low-res logits, cropped to the image
    boxes: list[torch.Tensor]  # (K, 4) in low-res pixels
    iou: list[torch.Tensor]  # (K,) predicted IoU

    def cat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(torch.cat(values) for values in (self.logits, self.boxes, self.iou))


class EverythingSegmenter:
    """The segment-everything pipeline, set up once and run on many images (or slices).

    Args:
        model: a MobileSAM model; default: the default session's (loaded once, on first use).
        sampler: ``"grid"``, ``"boxes"``, ``"ais"`` or ``"apg"`` (see the module doc).
        proposer: for ``"boxes"``: ``(H, W, 3)`` uint8 RGB -> ``(N, 4)`` ``(x0, y0, x1, y1)``
            pixel boxes (see :mod:`napari_mobilesam.segment.box_proposals`); default
            :class:`~napari_mobilesam.segment.box_proposals.ForegroundBoxProposer`.
        decoder: replaces the model's decoding: ``decoder(prompts, multimask_output)`` ->
            ``(low_res_logits (N, C, 256, 256), iou (N, C))``, the contract of
            :meth:`Predictor.decode_low_res`. Prompts are in pixels of the original
            image, logits in the model's low-res frame. The image is then not encoded.
        predictor: a :class:`~napari_mobilesam.engine.predictor.Predictor` to encode and decode
            with (its current image becomes the one segmented).
        **params: the sampler's settings (see :func:`~napari_mobilesam.segment.params.sampler_settings`).
    """

    def __init__(
        self,
        model=None,
        *,
        sampler: str = "grid",
        proposer=None,
        decoder: Decoder | None = None,
        predictor=None,
        **params,
    ) -> None:
        if proposer is not None and not callable(proposer):
            raise MobileSAMError(f"proposer must be a callable image -> (N, 4) boxes, got {type(proposer).__name__}.")
        if decoder is not None and not callable(decoder):
            raise MobileSAMError(
                f"decoder must be a callable like Predictor.decode_low_res, got {type(decoder).__name__}."
            )
        #: SAM's settings (grid, boxes), and the instance sampler's (ais, apg) or None.
        self.params, self.instance_params = sampler_settings(sampler, params)
        self.sampler = self.params.sampler
        self.model = model
        self.proposer = proposer
        self.decoder = decoder
        self.predictor = predictor

    def __call__(
        self, image_or_embedding, *, image=None, contrast_limits=None, maps=None, progress: Progress | None = None
    ):
        """Run :meth:`steps` to the end and return the ``(H, W)`` int32 labels."""
        steps = self.steps(image_or_embedding, image=image, contrast_limits=contrast_limits, maps=maps)
        return run_steps(steps, progress)

    def steps(
        self, image_or_embedding, *, image=None, contrast_limits=None, maps=None
    ) -> Generator[tuple[int, int], None, np.ndarray]:
        """Generator: yields ``(steps done, steps in total)`` and returns the labels.

        For napari's ``thread_worker``: the labels arrive as the worker's
        ``returned`` value. See :func:`segment_everything` for the arguments;
        ``maps``: the ``(3, H, W)`` instance maps of the image, when known (``"ais"``, ``"apg"``).
        """
        embedding, image = _split_input(image_or_embedding, image)
        if self.sampler in INSTANCE_SAMPLERS:
            from .instance_everything import instance_steps

            return (
                yield from instance_steps(
                    self.sampler,
                    self.instance_params,
                    self._predictor(),
                    embedding=embedding,
                    image=image,
                    contrast_limits=contrast_limits,
                    maps=maps,
                    decoder=self.decoder,
                )
            )
        original_size = embedding.original_size if embedding is not None else image.shape[:2]
        input_size = embedding.input_size if embedding is not None else preprocess_shape(*original_size)
        encode = self.decoder is None and embedding is None
        if self.sampler == "boxes" and image is None:
            raise MobileSAMError(
                "The boxes sampler finds its boxes in the pixels: pass the image too "
                "(segment_everything(embedding, image=image, ...)), or use sampler='grid'."
            )
        # What the proposer sees: 8-bit RGB through the contrast limits (or the model's own normalisation).
        rgb = None
        if self.sampler == "boxes":
            rgb = self._predictor().input_rgb(image, contrast_limits) if self.decoder is None else None
            rgb = to_uint8_rgb(image, contrast_limits) if rgb is None else rgb

        if self.sampler == "grid":
            width_height = np.array([original_size[1], original_size[0]], dtype=np.float64)
            batches = prompt_batches(point_grid(self.params.points_per_side) * width_height, self.params.points_per_batch)
        else:
            batches = []  # known once the proposer has run
        # Steps: encoding, proposing boxes, one per batch of prompts, the label image.
        total = int(encode) + (self.sampler == "boxes") + len(batches) + 1
        done = 0

        if self.decoder is not None:
            decode = self.decoder
        else:
            predictor = self._predictor()
            if encode:
                yield done, total
                predictor.set_image(image, contrast_limits)
                done += 1
            elif predictor.embedding is not embedding:
                predictor.set_embedding(embedding)
            # Masks failing pred_iou_thresh are dropped first thing in _filter: their
            # logits are never looked at, so the decoder does not compute them.
            min_iou = self.params.pred_iou_thresh if self.params.pred_iou_thresh > 0.0 else None
            decode = partial(predictor.decode_low_res, min_iou=min_iou)

        if self.sampler == "boxes":
            yield done, total
            proposer = self.proposer if self.proposer is not None else default_proposer()
            batches = prompt_batches(check_boxes(proposer(rgb), original_size), self.params.boxes_per_batch)
            done += 1
            total += len(batches)

        frame = LowResFrame(input_size, original_size)
        candidates = _Candidates([], [], [])
        multimask = self.sampler == "grid"
        # On a CPU, decoded in parts with a step (a chance to stop) between them: a cancel takes effect
        # within ~0.1 s instead of a whole batch. Each mask is filtered on its own: the same result.
        on_cpu = self.decoder is None and self._predictor().device.type == "cpu"
        for batch in batches:
            for part in prompt_batches(batch, STOP_EVERY if on_cpu else len(batch)):
                yield done, total
                prompts = point_prompts(part) if multimask else box_prompts(part)
                low_res, iou = check_decoded(decode(prompts, multimask), prompts.count, multimask)
                self._filter(low_res, iou, frame, candidates)
            done += 1
        yield done, total
        labels = self._labels(candidates, frame)
        yield total, total
        return labels

    # -- the pipeline ----------------------------------------------------------

    def require_instance_decoder(self) -> None:
        """For ``"ais"``/``"apg"``: raise unless the model has an instance decoder (before any slow work)."""
        if self.sampler in INSTANCE_SAMPLERS:
            from .instance_everything import instance_decoder_of

            instance_decoder_of(self._predictor().model, self.sampler)

    def _predictor(self):
        if self.predictor is None:
            from ..engine.session import resolve_predictor

            self.predictor = resolve_predictor(self.model)
        return self.predictor

    def _filter(self, low_res: torch.Tensor, iou: torch.Tensor, frame: LowResFrame, found: _Candidates) -> None:
        """Keep a batch's good masks, judged at low resolution (SAM's filters, in SAM's order)."""
        p = self.params
        logits = low_res.flatten(0, 1)[:, : frame.stored[0], : frame.stored[1]]
        iou = iou.flatten().float()
        if p.pred_iou_thresh > 0.0:
            logits, iou = _keep(iou > p.pred_iou_thresh, logits, iou)
        inside = logits[:, : frame.valid[0], : frame.valid[1]]
        if p.stability_score_thresh > 0.0:
            stable = stability_score(inside, MASK_THRESHOLD, p.stability_score_offset) >= p.stability_score_thresh
            logits, iou, inside = _keep(stable, logits, iou, inside)
        boxes = masks_to_boxes(inside > MASK_THRESHOLD)
        logits, iou, boxes = _keep(boxes[:, 2] > 0, logits, iou, boxes)  # not empty
        found.logits.append(logits.to(torch.float16))  # half the memory; out-of-range values become inf
        found.boxes.append(boxes)
        found.iou.append(iou)

    def _labels(self, candidates: _Candidates, frame: LowResFrame) -> np.ndarray:
        """NMS, full-size masks of the survivors only, optional cleanup, then the label image."""
        p = self.params
        if not candidates.iou:
            return np.zeros(frame.original_size, dtype=np.int32)
        logits, boxes, iou = candidates.cat()
        kept = nms(boxes * frame.box_scale.to(boxes.device), iou, p.box_nms_thresh)
        # Upsampling reads the extra low-res row and column past the image too: their boxes include it.
        reach = masks_to_boxes(logits[kept] > MASK_THRESHOLD)
        frame.to(logits.device)
        full_boxes, crops, scores = [], [], []
        for index, box in zip(kept.tolist(), reach, strict=True):
            mask = frame.upsample(logits[index], box)
            if mask is not None:
                full_boxes.append(mask[0])
                crops.append(mask[1])
                scores.append(float(iou[index]))
        full_boxes = np.array(full_boxes, dtype=np.int64).reshape(-1, 4)
        scores = np.array(scores, dtype=np.float64)

        if p.min_mask_region_area > 0 and crops:
            unchanged = np.ones(len(crops), dtype=np.float32)
            for i, (box, crop) in enumerate(zip(full_boxes, crops, strict=True)):
                cleaned, changed = remove_small_regions(crop, p.min_mask_region_area)
                if changed:
                    unchanged[i] = 0.0
                    full_boxes[i], crops[i] = tighten(box, cleaned)
            # As in SAM: masks the cleanup left alone win ties; the stable sort keeps the IoU order among equals.
            again = nms(torch.from_numpy(full_boxes).float(), torch.from_numpy(unchanged), p.box_nms_thresh).numpy()
            full_boxes, crops, scores = full_boxes[again], [crops[i] for i in again], scores[again]

        labels, _source = paint_labels(
            frame.original_size, full_boxes, crops, scores, min_area=max(p.min_mask_region_area, 1)
        )
        return labels


def segment_everything(
    image_or_embedding,
    model=None,
    *,
    sampler: str = "grid",
    image=None,
    contrast_limits: tuple[float, float] | None = None,
    proposer=None,
    decoder: Decoder | None = None,
    predictor=None,
    progress: Progress | None = None,
    **params,
) -> np.ndarray:
    """Segment every object of one 2D image into a label image.

    ``"ais"``/``"apg"`` need a model with micro-sam's instance decoder (``load_model(model="vit_t_lm")``) and
    keep micro-sam's ``generate()`` defaults (per model: :func:`~napari_mobilesam.segment.params.settings_for_model`).

    Args:
        image_or_embedding: ``(H, W)`` grey or ``(H, W, 3|4)`` colour image, or
            its :class:`~napari_mobilesam.engine.embedding.ImageEmbedding` (no encoding then).
        model: a MobileSAM model; default :func:`napari_mobilesam.load_model`.
        sampler: ``"grid"`` (SAM's point grid), ``"boxes"`` (box proposals, MobileSAMv2),
            ``"ais"`` (micro-sam's watershed on the decoder's maps) or ``"apg"`` (prompts from the maps).
        image: the image of an embedding, for the ``"boxes"`` sampler's proposer.
        contrast_limits: ``(low, high)`` display range mapped to 0..255 (as in
            :meth:`Predictor.embed <napari_mobilesam.engine.predictor.Predictor.embed>`).
        proposer: ``"boxes"`` sampler: ``(H, W, 3)`` uint8 RGB -> ``(N, 4)``
            ``(x0, y0, x1, y1)`` pixel boxes, best first (see :mod:`napari_mobilesam.segment.box_proposals`).
        decoder: a stand-in for the model's decoding with the contract of
            :meth:`Predictor.decode_low_res <napari_mobilesam.engine.predictor.Predictor.decode_low_res>`;
            the image is then not encoded.
        predictor: a :class:`~napari_mobilesam.engine.predictor.Predictor` to reuse.
        progress: called as ``progress(steps_done, steps_total)``.
        **params: :class:`EverythingParams` (SAM's names): ``points_per_side=32``,
            ``points_per_batch=64``, ``pred_iou_thresh=0.88``, ``stability_score_thresh=0.95``,
            ``stability_score_offset=1.0``, ``box_nms_thresh=0.7``, ``min_mask_region_area=0``,
            ``boxes_per_batch=64``; ``"ais"``: :class:`~napari_mobilesam.segment.instance_params.WatershedParams`
            (``center_distance_threshold=0.5``, ``min_size=0``, ...); ``"apg"``:
            :class:`~napari_mobilesam.segment.instance_params.APGParams`. Another sampler's setting is an error.

    Returns:
        ``(H, W)`` int32 labels: 0 is background, objects are ``1..N``, numbered
        in raster order of their first pixel; where masks overlap the smaller one
        wins (see :mod:`napari_mobilesam.segment.label_image`); ``"ais"``/``"apg"``: micro-sam's rules.

    Example::

        labels = segment_everything(image)                   # SAM's 32x32 point grid
        labels = segment_everything(image, sampler="boxes")  # one box prompt per object
        labels = segment_everything(image, points_per_side=16, pred_iou_thresh=0.8)
        labels = segment_everything(image, load_model(model="vit_t_lm"), sampler="ais", min_size=100)
        viewer.add_labels(labels, name="everything")
    """
    segmenter = EverythingSegmenter(
        model, sampler=sampler, proposer=proposer, decoder=decoder, predictor=predictor, **params
    )
    return segmenter(image_or_embedding, image=image, contrast_limits=contrast_limits, progress=progress)


# -- the input, and the rows the filters keep -----------------------------------


def _split_input(image_or_embedding, image) -> tuple[ImageEmbedding | None, np.ndarray | None]:
    if isinstance(image_or_embedding, ImageEmbedding):
        embedding = image_or_embedding
        if image is not None:
            image = np.asarray(image)
            if image.shape[:2] != tuple(embedding.original_size):
                raise MobileSAMError(
                    f"The image (shape {image.shape}) is not the one of the embedding "
                    f"(original size {embedding.original_size}); pass the image that was encoded."
                )
        return embedding, image
    if image is not None:
        raise MobileSAMError("image= is only for an embedding; pass the image itself as the first argument.")
    if image_or_embedding is None:
        raise MobileSAMError("Nothing to segment: pass a 2D image (H, W) or (H, W, 3), or an ImageEmbedding.")
    check_image_size(image_or_embedding)  # before a lazy image is read
    image = np.asarray(image_or_embedding)
    if image.ndim == 3 and image.shape[-1] not in (1, 3, 4):
        raise MobileSAMError(
            f"segment_everything takes one 2D image, (H, W) or (H, W, 3|4), got shape {image.shape}. "
            "For a stack, pass one slice (e.g. stack[z]) at a time."
        )
    return None, image


def _keep(keep: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rows of ``tensors`` where ``keep`` is true (no copy when all are kept)."""
    if bool(keep.all()):
        return tensors
    return tuple(tensor[keep] for tensor in tensors)
