"""Prompt-based segmentation of one 2D image: encode once, then decode every prompt.

Coordinates are ``(x, y)`` pixels of the image passed to :meth:`Predictor.set_image`
(column, row: x along the width), the convention of SAM's ``SamPredictor``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MobileSAMError
from .embedding import ImageEmbedding
from .mask_resize import resize_logits
from .preprocessing import apply_boxes, apply_coords, preprocess_shape, resize_longest_side, to_model_rgb
from .prompts import Prompts, check_prompts


class Predictor:
    """SAM's predictor contract on MobileSAM, for microscopy images.

    Example::

        predictor = Predictor(load_model())
        predictor.set_image(image)                       # (H, W) or (H, W, 3)
        masks, scores, logits = predictor.predict(
            point_coords=[[120.0, 80.0]], point_labels=[1])
        best = masks[scores.argmax()]                    # (H, W) bool
    """

    def __init__(self, model, precision: str | None = None) -> None:
        """``precision``: the encoder's arithmetic, ``"float32"`` (exact), ``"bfloat16"``, ``"float16"`` or
        ``"auto"`` (see :mod:`napari_mobilesam.engine.precision`); default: the model's
        (``load_model(precision=...)``), else float32. Embeddings are float32 whatever it is.
        """
        from .precision import choose_precision

        self.model = model
        choice = choose_precision(model.device, precision or getattr(model, "precision", None))
        #: The precision the encoder runs in (``"float32"``, ``"bfloat16"`` or ``"float16"``) and why.
        self.precision, self.precision_reason = choice.name, choice.reason
        self._dtype = None if choice.name == "float32" else choice.dtype
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- the image ---------------------------------------------------------

    def embed(self, image, contrast_limits: tuple[float, float] | None = None) -> ImageEmbedding:
        """Encode one 2D image and return its embedding, without making it current.

        ``image``: ``(H, W)`` grey or ``(H, W, 3|4)`` colour, any numeric dtype.
        ``contrast_limits``: ``(low, high)`` display range mapped to 0..255
        (see :mod:`napari_mobilesam.engine.preprocessing`; without them, the
        model's own input normalisation).
        """
        return self.embed_many([image], contrast_limits, batch_size=1)[0]

    def embed_many(
        self, images, contrast_limits: tuple[float, float] | None = None, batch_size: int | None = None
    ) -> list[ImageEmbedding]:
        """Encode several 2D images, ``batch_size`` per forward pass; their embeddings in order.

        Each image is preprocessed on its own, as by :meth:`embed` (sizes may
        differ: all are padded to 1024 x 1024), so the embeddings equal
        one-at-a-time ones up to float rounding. ``batch_size``: default
        :func:`~napari_mobilesam.engine.batching.encode_batch_size` for this
        device and precision (1 on a CPU).
        """
        from .batching import encode_batch_size

        images = list(images)
        size = max(1, int(batch_size or encode_batch_size(self.device, self.precision)))
        out = []
        for start in range(0, len(images), size):
            out.extend(self._encode([self.input_rgb(image, contrast_limits) for image in images[start : start + size]]))
        return out

    def _encode(self, rgbs: list[np.ndarray]) -> list[ImageEmbedding]:
        """One forward pass of the encoder over uint8 RGB images."""
        resized = [resize_longest_side(rgb) for rgb in rgbs]
        with torch.inference_mode():
            inputs = [
                self.model.preprocess(torch.from_numpy(r).to(self.device).permute(2, 0, 1)[None].float())
                for r in resized
            ]
            batch = inputs[0] if len(inputs) == 1 else torch.cat(inputs)
            features = self.model.image_encoder(batch, dtype=self._dtype).cpu().numpy()
        # Each embedding its own array: one kept in a cache must not hold its whole batch's.
        own = (lambda i: features[i]) if len(rgbs) == 1 else (lambda i: features[i].copy())
        return [
            ImageEmbedding(own(i), rgb.shape[:2], r.shape[:2])
            for i, (rgb, r) in enumerate(zip(rgbs, resized, strict=True))
        ]

    def input_rgb(self, image, contrast_limits: tuple[float, float] | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8: ``image`` as this model's encoder sees it (its ``input_normalization``)."""
        return to_model_rgb(image, contrast_limits, getattr(self.model, "input_normalization", "percentiles"))

    def set_image(self, image, contrast_limits: tuple[float, float] | None = None) -> ImageEmbedding:
        """Encode one 2D image and make it the one :meth:`predict` segments."""
        embedding = self.embed(image, contrast_limits)
        self.set_embedding(embedding)
        return embedding

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Make a stored embedding current (no encoding)."""
        if not isinstance(embedding, ImageEmbedding):
            raise MobileSAMError(f"set_embedding expects an ImageEmbedding, got {type(embedding).__name__}.")
        expected = preprocess_shape(*embedding.original_size)
        if tuple(embedding.input_size) != expected:
            raise MobileSAMError(
                f"Embedding input_size {embedding.input_size} does not match its original_size "
                f"{embedding.original_size} (expected {expected}); it was not made by this preprocessing."
            )
        self.embedding = embedding
        self.features = torch.from_numpy(embedding.features).to(self.device)[None]
        self.original_size = embedding.original_size
        self.input_size = embedding.input_size
        self._context = None

    def reset_image(self) -> None:
        """Forget the current image."""
        self.embedding = None
        self.features = None
        self.original_size = None
        self.input_size = None
        self._context = None
        self._dense_pe = None

    @property
    def is_image_set(self) -> bool:
        return self.embedding is not None

    # -- prompts -----------------------------------------------------------

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment the current image from prompts.

        Args:
            point_coords: ``(K, 2)`` ``(x, y)`` pixel coordinates, or ``(N, K, 2)`` for N objects.
            point_labels: ``(K,)`` (or ``(N, K)``), 1 = foreground, 0 = background.
            box: ``(4,)`` ``(x0, y0, x1, y1)`` in pixels, or ``(N, 4)``: N objects decoded as one batch.
            mask_input: ``(1, 256, 256)`` low-res logits from an earlier call (``(N, 1, 256, 256)`` batched).
            multimask_output: three candidate masks (for ambiguous single clicks) instead of one.
            return_logits: return float logits instead of boolean masks.

        Returns:
            ``masks`` ``(C, H, W)`` bool (or float logits), ``iou_predictions`` ``(C,)``
            and ``low_res_logits`` ``(C, 256, 256)``, ``C`` = 3 or 1. With batched
            prompts every output gains a leading ``N`` axis.
        """
        if not self.is_image_set:
            raise MobileSAMError("No image is set: call set_image(image) or set_embedding(embedding) before predict.")
        prompts = check_prompts(point_coords, point_labels, box, mask_input, self.original_size)
        masks, iou, low_res = self.predict_torch(prompts, multimask_output, return_logits)
        masks, iou, low_res = masks.cpu().numpy(), iou.cpu().numpy(), low_res.cpu().numpy()
        if not prompts.batched:
            masks, iou, low_res = masks[0], iou[0], low_res[0]
        return masks, iou, low_res

    def predict_torch(
        self, prompts: Prompts, multimask_output: bool = True, return_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode checked prompts; every output has a leading batch axis ``N``."""
        masks, iou = self.decode_low_res(prompts, multimask_output)
        with torch.inference_mode():
            full = resize_logits(masks, self.input_size, self.original_size)
        if not return_logits:
            full = full > self.model.mask_threshold
        return full, iou, masks

    def decode_low_res(
        self, prompts: Prompts, multimask_output: bool = True, min_iou: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``(N, C, 256, 256)`` and IoU ``(N, C)`` for checked prompts.

        ``min_iou``: prompts whose masks all have a predicted IoU of at most
        this skip the mask head and come back as empty (``-inf``) logits; for
        callers that drop such masks anyway (``pred_iou_thresh``).
        """
        device = self.device
        points = boxes = masks = None
        if prompts.point_coords is not None:
            coords = apply_coords(prompts.point_coords, self.original_size)
            points = (
                torch.as_tensor(coords, dtype=torch.float32, device=device),
                torch.as_tensor(prompts.point_labels, dtype=torch.int64, device=device),
            )
        if prompts.boxes is not None:
            boxes = torch.as_tensor(apply_boxes(prompts.boxes, self.original_size), dtype=torch.float32, device=device)
        if prompts.mask_input is not None:
            masks = torch.as_tensor(prompts.mask_input, dtype=torch.float32, device=device)
        decoder = self.model.mask_decoder
        with torch.inference_mode():
            sparse = self.model.prompt_encoder.embed_sparse(points, boxes, masks)
            # Without a mask prompt the image side is the same for every prompt: prepared once.
            # With one, it is the bare image's (prepared once) plus the mask's low-rank part.
            if masks is None:
                context = self._image_context()
            else:
                context = decoder.prepare_with_masks(
                    self._image_context(bare=True), self.model.prompt_encoder.mask_downscaling, masks
                )
            return decoder.decode(context, sparse, multimask_output, min_iou=min_iou)

    def _image_pe(self) -> torch.Tensor:
        if self._dense_pe is None:
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        return self._dense_pe

    def _image_context(self, bare: bool = False):
        """The decoder's image side, made once per image: with the no-mask embedding, or ``bare`` (for mask prompts)."""
        if self._context is None:
            self._context = {}
        if bare not in self._context:
            dense = self.model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            self._context[bare] = self.model.mask_decoder.prepare(self.features, self._image_pe(), 0 if bare else dense)
        return self._context[bare]
