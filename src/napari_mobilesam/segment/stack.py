"""Segment every 2D slice of a stack, with consistent ids across slices.

A stack is any array ``(..., Y, X)`` or, for colour, ``(..., Y, X, 3|4)``:
every index over the leading axes is one 2D slice, taken in C order
(``slice_index`` = flat position). Lazy arrays (dask, zarr) are read one
slice at a time. Each slice is segmented on its own (:func:`segment_slice`,
the very function dask workers run); ids across slices, and objects that
continue on the next z-slice, are :mod:`~napari_mobilesam.segment.linking`'s.

Embeddings come from and go to an
:class:`~napari_mobilesam.cache.embedding_cache.EmbeddingCache`, so a second run over the
same stack encodes nothing. ``decoder_for`` replaces the model's decoding
slice by slice (a stand-in such as the ground-truth oracle of the tests):
nothing is encoded and the cache is not touched then.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from ..errors import MobileSAMError
from .linking import DEFAULT_LINK_IOU, link_and_renumber, offset_labels, relabel_in_order, slice_offsets
from .params import LinkParams


@dataclass(frozen=True)
class SliceLabels:
    """One finished slice: where it is and what was found there."""

    index: tuple[int, ...]  # position over the leading axes
    slice_index: int  # flat position, C order
    n_slices: int
    labels: np.ndarray  # (Y, X) int32, this slice's objects numbered 1..n (see segment.linking for the stack's ids)
    embedding_source: str  # "memory", "disk", "computed", or "none" (a decoder_for stand-in, nothing encoded)


def is_rgb(stack, rgb: bool | None = None) -> bool:
    """napari's rule unless told: a last axis of 3 or 4 on a >= 3D array is colour."""
    if rgb is not None:
        return bool(rgb)
    return len(stack.shape) >= 3 and stack.shape[-1] in (3, 4)


def leading_shape(stack, rgb: bool) -> tuple[int, ...]:
    """Shape of the axes that index slices (everything before Y, X[, channel])."""
    spatial = 3 if rgb else 2
    if len(stack.shape) < spatial:
        kind = "colour (..., Y, X, 3)" if rgb else "(..., Y, X)"
        raise MobileSAMError(f"Expected a {kind} image or stack, got shape {tuple(stack.shape)}.")
    return tuple(stack.shape[: len(stack.shape) - spatial])


def plane_shape(stack, rgb: bool) -> tuple[int, int]:
    """``(Y, X)`` of each slice, checked to be segmentable from the shape alone (nothing is read)."""
    from ..engine.preprocessing import check_plane_size

    leading = leading_shape(stack, rgb)
    height, width = (int(s) for s in stack.shape[len(leading) : len(leading) + 2])
    if height == 0 or width == 0:
        raise MobileSAMError(f"The slices are empty (shape {tuple(stack.shape)}); pass an image with pixels.")
    check_plane_size(height, width)
    return height, width


def slice_indices(stack, rgb: bool) -> list[tuple[int, ...]]:
    """Every slice position over the leading axes, in C order."""
    return [tuple(int(i) for i in index) for index in np.ndindex(*leading_shape(stack, rgb))]


def segment_slice_steps(
    plane: np.ndarray,
    *,
    predictor=None,
    cache=None,
    contrast_limits: tuple[float, float] | None = None,
    image_id: str | None = None,
    slice_index: int = 0,
    n_slices: int = 1,
    sampler: str = "grid",
    decoder=None,
    embedding=None,
    **params,
) -> Generator[tuple[int, int], None, tuple[np.ndarray, str]]:
    """Generator: segment everything on one slice, yielding ``(steps done, steps in total)`` between prompt
    batches; returns ``(labels (Y, X) int32 1..n, embedding source)``.

    The embedding comes from ``cache`` (encoded with ``predictor`` on a miss), filed
    as slice ``slice_index`` of ``n_slices`` of ``image_id``'s store; for ``"ais"``
    and ``"apg"`` the instance maps of the model's decoder too (kept beside it).
    Settings and the decoder are checked before anything is encoded. With
    ``decoder`` (a stand-in, see :func:`~napari_mobilesam.segment_everything`)
    nothing is encoded. This is the one per-slice function: stacks, the command
    line, dask workers and the widget run it.
    ``embedding``: ``(ImageEmbedding, source)`` already taken from the cache (a batch's), used as it is.
    """
    from .everything import EverythingSegmenter
    from .params import INSTANCE_SAMPLERS

    if decoder is not None:
        segmenter = EverythingSegmenter(sampler=sampler, decoder=decoder, **params)
        labels = yield from segmenter.steps(plane, contrast_limits=contrast_limits)
        return relabel_in_order(labels), "none"
    segmenter = EverythingSegmenter(predictor.model, sampler=sampler, predictor=predictor, **params)
    segmenter.require_instance_decoder()
    if embedding is None:
        yield 0, 0  # before the encode: a cancel takes effect before the slow step
    slot = {"contrast_limits": contrast_limits, "image_id": image_id, "slice_index": slice_index, "n_slices": n_slices}
    maps = None
    if sampler in INSTANCE_SAMPLERS:
        embedding, maps, source = cache.embedding_and_maps(predictor, plane, known=embedding, **slot)
    elif embedding is None:
        embedding, source = cache.embedding(predictor, plane, **slot)
    else:
        embedding, source = embedding
    labels = yield from segmenter.steps(embedding, image=plane, contrast_limits=contrast_limits, maps=maps)
    return relabel_in_order(labels), source


def segment_slice(plane: np.ndarray, **kwargs) -> tuple[np.ndarray, str]:
    """:func:`segment_slice_steps` run to its end: ``(labels (Y, X) int32 1..n, embedding source)``."""
    from .steps import run_steps

    return run_steps(segment_slice_steps(plane, **kwargs))


@dataclass(frozen=True)
class SliceStep:
    """Progress inside slice ``slice_index``: ``done`` of ``total`` steps (encoding, prompt batches, labels)."""

    slice_index: int
    done: int
    total: int


def iter_segment_stack(
    stack,
    model=None,
    *,
    rgb: bool | None = None,
    cache=None,
    contrast_limits: tuple[float, float] | None = None,
    sampler: str = "grid",
    image_id: str | None = None,
    slices: Sequence[int] | None = None,
    predictor=None,
    decoder_for: Callable[[int], Callable] | None = None,
    steps: bool = False,
    encode_batch: int | None = None,
    **params,
) -> Iterator[SliceLabels | SliceStep]:
    """Segment everything on each slice, yielding :class:`SliceLabels` as each finishes.

    Stop iterating (or ``close()`` the generator) to cancel: finished slices
    have been yielded already. With ``steps=True`` it also yields a
    :class:`SliceStep` between the prompt batches of a slice, so a GUI can
    show progress and cancel within a batch rather than a slice. ``slices``
    restricts the work to some flat slice indices, in the order given.
    ``cache`` is an :class:`~napari_mobilesam.cache.embedding_cache.EmbeddingCache`
    (``None``: the default session's); embeddings come from it and go to it, so
    a second run encodes nothing. Each slice's objects are numbered ``1..n`` on their own.

    ``decoder_for(slice_index)`` -> a stand-in for the model's decoding of
    that slice, with the contract of ``segment_everything``'s ``decoder``
    (each slice is another image, so each gets its own). The slices are then
    not encoded, no model is loaded and the cache is not used.

    ``encode_batch`` slices are read and encoded together before they are
    segmented (default: :func:`~napari_mobilesam.engine.batching.encode_batch_size`
    for the predictor's device and precision, 1 on a CPU); a cancel takes
    effect before each batch's encode and between the prompt batches of a slice.
    """
    if decoder_for is not None and not callable(decoder_for):
        raise MobileSAMError(
            f"decoder_for must be a function slice_index -> decoder, got {type(decoder_for).__name__}."
        )
    rgb = is_rgb(stack, rgb)
    plane_shape(stack, rgb)  # before the first slice is read
    positions = slice_indices(stack, rgb)
    wanted = range(len(positions)) if slices is None else [_check_slice(flat, len(positions)) for flat in slices]
    batch = 1
    if decoder_for is None:
        from ..engine.batching import encode_batch_size
        from ..engine.session import resolve_cache, resolve_predictor

        predictor = resolve_predictor(model, predictor)
        cache = resolve_cache(cache)
        batch = encode_batch or encode_batch_size(predictor.device, getattr(predictor, "precision", "float32"))
    ready: dict[int, tuple] = {}  # flat index -> (plane, (embedding, source)) of the batch being segmented
    for position, flat in enumerate(wanted):
        if batch > 1 and flat not in ready:
            group = list(wanted[position : position + batch])
            if steps:
                yield SliceStep(flat, 0, 0)  # before the batch's encode: a cancel takes effect before the slow step
            ready = _encode_batch(stack, positions, group, predictor, cache, contrast_limits, image_id)
        index = positions[flat]
        # A lazy (dask, zarr) stack is read here, one slice (or one batch) at a time.
        plane, embedding = ready.pop(flat) if flat in ready else (np.asarray(stack[index]), None)
        work = segment_slice_steps(
            plane,
            predictor=predictor,
            cache=cache,
            contrast_limits=contrast_limits,
            image_id=image_id,
            slice_index=flat,
            n_slices=len(positions),
            sampler=sampler,
            decoder=None if decoder_for is None else decoder_for(flat),
            embedding=embedding,
            **params,
        )
        while True:
            try:
                done, total = next(work)
            except StopIteration as finished:
                labels, source = finished.value
                break
            if steps:
                yield SliceStep(flat, done, total)
        yield SliceLabels(index, flat, len(positions), labels, source)


def _encode_batch(stack, positions, group, predictor, cache, contrast_limits, image_id) -> dict[int, tuple]:
    """Read the slices ``group`` (flat indices) and take their embeddings from ``cache`` in one call."""
    planes = [np.asarray(stack[positions[flat]]) for flat in group]
    found = cache.embeddings(
        predictor,
        planes,
        contrast_limits=contrast_limits,
        image_id=image_id,
        slice_indices=group,
        n_slices=len(positions),
        batch_size=len(group),
    )
    return {flat: (plane, result) for flat, plane, result in zip(group, planes, found, strict=True)}


def _check_slice(flat, n_slices: int) -> int:
    if isinstance(flat, bool) or not isinstance(flat, (int, np.integer)) or not 0 <= flat < n_slices:
        raise MobileSAMError(
            f"Slice {flat!r} does not exist: the stack has {n_slices} slices (flat indices 0..{n_slices - 1})."
        )
    return int(flat)


def segment_stack(
    stack,
    model=None,
    *,
    rgb: bool | None = None,
    cache=None,
    link_3d: bool = True,
    link_iou: float = DEFAULT_LINK_IOU,
    progress: Callable[[int, int], bool | None] | None = None,
    contrast_limits: tuple[float, float] | None = None,
    sampler: str = "grid",
    image_id: str | None = None,
    slices: Sequence[int] | None = None,
    decoder_for: Callable[[int], Callable] | None = None,
    **params,
) -> np.ndarray:
    """Segment everything on every 2D slice of ``stack`` -> labels of its spatial shape.

    Args:
        stack: ``(..., Z, Y, X)`` grey or ``(..., Z, Y, X, 3|4)`` colour (any number of
            leading axes, e.g. ``(T, Z, Y, X)``); numpy, dask or zarr, read one slice at a time.
        model: a loaded MobileSAM (default: :func:`~napari_mobilesam.load_model`).
        rgb: whether the last axis is colour (default: napari's guess).
        cache: embedding cache (default: the shared one; a second run encodes nothing).
        link_3d: give an object spanning adjacent z-slices one id (see the module doc);
            ``False``: ids are unique across the stack, one set per slice.
        link_iou: the least IoU of two masks on adjacent z-slices for them to be one object.
        progress: called as ``progress(done, total)`` after each slice; return
            ``False`` to cancel: finished slices are kept (and linked), the rest
            stay 0, and a warning says how many were finished.
        contrast_limits: ``(low, high)`` display range mapped to 0..255 for every slice.
        sampler, **params: as for :func:`~napari_mobilesam.segment_everything`.
        image_id: names the stack's store in the disk cache (e.g. the file path).
        slices: flat slice indices (C order over the leading axes) to segment; the
            others stay 0. Default: all.
        decoder_for: ``decoder_for(slice_index)`` -> a stand-in decoder for that slice
            (see :func:`iter_segment_stack`); nothing is encoded then.

    Returns:
        ``int32`` labels, shape ``stack.shape`` without a colour axis; 0 is background,
        objects ``1..N`` numbered by slice, then in raster order within their first slice.

    Example::

        labels = segment_stack(zyx_stack, model, points_per_side=16)
        viewer.add_labels(labels, scale=image_layer.scale)
    """
    LinkParams(link_3d=link_3d, link_iou=link_iou)  # before any slice is segmented
    rgb = is_rgb(stack, rgb)
    slices = None if slices is None else list(slices)
    leading = leading_shape(stack, rgb)
    spatial = plane_shape(stack, rgb)
    n_slices = int(np.prod(leading, dtype=np.int64))
    local = np.zeros((n_slices, *spatial), dtype=np.int32)  # each slice's own ids, 1..n
    counts = np.zeros(n_slices, dtype=np.int64)
    total = n_slices if slices is None else len(slices)
    done = 0
    results = iter_segment_stack(
        stack,
        model,
        rgb=rgb,
        cache=cache,
        contrast_limits=contrast_limits,
        sampler=sampler,
        image_id=image_id,
        slices=slices,
        decoder_for=decoder_for,
        **params,
    )
    with closing(results):
        for result in results:
            local[result.slice_index] = result.labels
            counts[result.slice_index] = int(result.labels.max(initial=0))
            done += 1
            if progress is not None and progress(done, total) is False:
                break
    if done < total:
        warnings.warn(
            f"segment_stack cancelled after {done} of {total} slices; the finished slices are kept, the others are 0.",
            stacklevel=2,
        )
    offsets = slice_offsets(counts)
    planes, _ = link_and_renumber(
        lambda flat: offset_labels(local[flat], offsets[flat]),
        int(counts.sum()),
        leading,
        link_3d=link_3d,
        link_iou=link_iou,
    )
    labels = np.empty((n_slices, *spatial), dtype=np.int32)
    for flat, plane in enumerate(planes):
        labels[flat] = plane
    return labels.reshape(*leading, *spatial)
