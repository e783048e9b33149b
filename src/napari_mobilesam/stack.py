"""Segment every 2D slice of a stack, with consistent ids across slices.

A stack is any array ``(..., Y, X)`` or, for colour, ``(..., Y, X, 3|4)``:
every index over the leading axes is one 2D slice, taken in C order
(``slice_index`` = flat position). Lazy arrays (dask, zarr) are read one
slice at a time.

Ids: slice ``k`` gets ids above every id of slices ``0..k-1``, so ids are
unique across the stack. With ``link_3d`` an object that continues on the
next z-slice (the leading axis just before ``Y``) keeps one id: masks of
adjacent slices are matched one to one by IoU (greedy, highest IoU first,
at least ``link_iou``), matched ids are merged, and all ids are renumbered
``1..N`` in order of their smallest original id, so the result does not
depend on the order in which slices were computed.

Embeddings come from and go to an
:class:`~napari_mobilesam.cache.EmbeddingCache`, so a second run over the
same stack encodes nothing. ``decoder_for`` replaces the model's decoding
slice by slice (a stand-in such as the ground-truth oracle of the tests):
nothing is encoded and the cache is not touched then.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from .errors import MobileSAMError

DEFAULT_LINK_IOU = 0.5


@dataclass(frozen=True)
class SliceLabels:
    """One finished slice: where it is and what was found there."""

    index: tuple[int, ...]  # position over the leading axes
    slice_index: int  # flat position, C order
    n_slices: int
    labels: np.ndarray  # (Y, X) int64, ids already unique across the stack (offset by slice_index)
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


def slice_indices(stack, rgb: bool) -> list[tuple[int, ...]]:
    """Every slice position over the leading axes, in C order."""
    return [tuple(int(i) for i in index) for index in np.ndindex(*leading_shape(stack, rgb))]


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
    **params,
) -> Iterator[SliceLabels]:
    """Segment everything on each slice, yielding :class:`SliceLabels` as each finishes.

    Stop iterating (or ``close()`` the generator) to cancel: finished slices
    have been yielded already. ``slices`` restricts the work to some flat
    slice indices, in the order given. ``cache`` is an
    :class:`~napari_mobilesam.cache.EmbeddingCache` (``None``: the shared
    one); embeddings come from it and go to it, so a second run encodes
    nothing. Ids of slice ``k`` start above ``k * id_stride`` where
    ``id_stride`` is fixed per stack (see :func:`segment_stack`).

    ``decoder_for(slice_index)`` -> a stand-in for the model's decoding of
    that slice, with the contract of ``segment_everything``'s ``decoder``
    (each slice is another image, so each gets its own). The slices are then
    not encoded, no model is loaded and the cache is not used.
    """
    from .everything import segment_everything

    if decoder_for is not None and not callable(decoder_for):
        raise MobileSAMError(
            f"decoder_for must be a function slice_index -> decoder, got {type(decoder_for).__name__}."
        )
    rgb = is_rgb(stack, rgb)
    positions = slice_indices(stack, rgb)
    wanted = range(len(positions)) if slices is None else [_check_slice(flat, len(positions)) for flat in slices]
    stride = id_stride(stack, rgb)
    if decoder_for is None:
        from .cache import shared_cache
        from .predictor import Predictor

        if model is None and predictor is None:
            from .weights import load_model

            model = load_model()
        predictor = predictor if predictor is not None else Predictor(model)
        cache = cache if cache is not None else shared_cache()
    for flat in wanted:
        index = positions[flat]
        plane = np.asarray(stack[index])  # a lazy (dask, zarr) stack is read here, one slice at a time
        if decoder_for is None:
            embedding, source = cache.embedding(
                predictor,
                plane,
                contrast_limits=contrast_limits,
                image_id=image_id,
                slice_index=flat,
                n_slices=len(positions),
            )
            labels = segment_everything(
                embedding,
                predictor.model,
                image=plane,
                sampler=sampler,
                predictor=predictor,
                contrast_limits=contrast_limits,
                **params,
            )
        else:
            source = "none"
            labels = segment_everything(
                plane, sampler=sampler, decoder=decoder_for(flat), contrast_limits=contrast_limits, **params
            )
        yield SliceLabels(index, flat, len(positions), offset_labels(labels, flat * stride), source)


def _check_slice(flat, n_slices: int) -> int:
    if isinstance(flat, bool) or not isinstance(flat, (int, np.integer)) or not 0 <= flat < n_slices:
        raise MobileSAMError(
            f"Slice {flat!r} does not exist: the stack has {n_slices} slices (flat indices 0..{n_slices - 1})."
        )
    return int(flat)


def id_stride(stack, rgb: bool) -> int:
    """Ids reserved per slice before linking: more than one object per pixel is impossible."""
    height, width = (stack.shape[-3], stack.shape[-2]) if rgb else (stack.shape[-2], stack.shape[-1])
    return int(height) * int(width) + 1


def offset_labels(labels: np.ndarray, offset: int) -> np.ndarray:
    """Shift non-zero ids by ``offset`` (as int64, so large stacks cannot overflow)."""
    labels = labels.astype(np.int64)
    labels[labels > 0] += offset
    return labels


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
    if isinstance(link_iou, bool) or not isinstance(link_iou, (int, float, np.number)) or not 0.0 <= link_iou <= 1.0:
        raise MobileSAMError(f"link_iou must be a number between 0 and 1, got {link_iou!r}.")
    rgb = is_rgb(stack, rgb)
    slices = None if slices is None else list(slices)
    leading = leading_shape(stack, rgb)
    spatial = tuple(stack.shape[-3:-1]) if rgb else tuple(stack.shape[-2:])
    labels = np.zeros((*leading, *spatial), dtype=np.int64)
    total = int(np.prod(leading, dtype=np.int64)) if slices is None else len(slices)
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
            labels[result.index] = result.labels
            done += 1
            if progress is not None and progress(done, total) is False:
                break
    if done < total:
        warnings.warn(
            f"segment_stack cancelled after {done} of {total} slices; the finished slices are kept, the others are 0.",
            stacklevel=2,
        )
    if link_3d:
        labels = link_slices(labels, link_iou)
    return relabel_in_order(labels)


def link_slices(labels: np.ndarray, iou_threshold: float = DEFAULT_LINK_IOU) -> np.ndarray:
    """Merge ids of objects that continue on the next slice along axis ``-3`` (z).

    ``labels`` ``(..., Z, Y, X)`` with ids unique across the stack. Adjacent
    slices are matched one to one: pairs by descending IoU (ties: smaller ids
    first), each id used once, IoU at least ``iou_threshold``. Returns labels
    with every linked group carrying its smallest id.
    """
    if labels.ndim < 3 or labels.shape[-3] < 2:
        return labels
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.get(i, i) != i:
            i = parent[i]
        return i

    for outer in np.ndindex(*labels.shape[:-3]):
        volume = labels[outer]
        for z in range(volume.shape[0] - 1):
            for a, b in match_masks(volume[z], volume[z + 1], iou_threshold):
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    if not parent:
        return labels
    ids = np.array(sorted(parent), dtype=np.int64)
    roots = np.array([root(int(i)) for i in ids], dtype=np.int64)
    return _apply_mapping(labels, ids, roots)


def match_masks(first: np.ndarray, second: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """One-to-one ``(id_in_first, id_in_second)`` matches with IoU >= ``iou_threshold``.

    Greedy by descending IoU (ties: smaller ids first); 0 is background.
    """
    both = (first > 0) & (second > 0)
    if not both.any():
        return []
    ids_a, area_a = np.unique(first[first > 0], return_counts=True)
    ids_b, area_b = np.unique(second[second > 0], return_counts=True)
    # Each overlapping pair as one integer of positions in ids_a, ids_b (the ids themselves may be huge).
    codes = np.searchsorted(ids_a, first[both]).astype(np.int64) * len(ids_b) + np.searchsorted(ids_b, second[both])
    codes, inter = np.unique(codes, return_counts=True)
    in_a, in_b = np.divmod(codes, len(ids_b))
    iou = inter / (area_a[in_a] + area_b[in_b] - inter)
    order = np.lexsort((ids_b[in_b], ids_a[in_a], -iou))
    used_a: set[int] = set()
    used_b: set[int] = set()
    matches = []
    for k in order:
        if iou[k] < iou_threshold:
            break
        a, b = int(ids_a[in_a[k]]), int(ids_b[in_b[k]])
        if a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
            matches.append((a, b))
    return matches


def relabel_in_order(labels: np.ndarray) -> np.ndarray:
    """Renumber ids to ``1..N`` keeping their order; returns int32."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) >= np.iinfo(np.int32).max:
        raise MobileSAMError("More objects than an int32 label image can hold.")
    return _apply_mapping(labels, ids, np.arange(1, len(ids) + 1)).astype(np.int32)


def _apply_mapping(labels: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Replace sorted ids ``old`` by ``new`` (other ids unchanged), vectorised."""
    if len(old) == 0:
        return labels.copy()
    flat = labels.ravel()
    position = np.searchsorted(old, flat)
    position = np.clip(position, 0, len(old) - 1)
    hit = old[position] == flat
    out = flat.copy()
    out[hit] = new[position[hit]]
    return out.reshape(labels.shape)
