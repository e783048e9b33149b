"""Ids across the slices of a stack: one numbering, and objects that continue on the next z-slice linked.

Every slice comes segmented on its own, its objects numbered ``1..n`` (see
:func:`relabel_in_order`). Across the stack:

1. **numbering**: slice ``k``'s ids are offset by the number of objects on
   the slices before it in C order (:func:`slice_offsets`), so ids are unique
   across the stack and grow with the slice index;
2. **linking** (optional): masks of adjacent z-slices (the leading axis just
   before ``Y``; never from the last z of one volume to the first of the
   next) are matched one to one by IoU (:func:`match_masks`: greedy, highest
   IoU first, at least ``link_iou``); matched ids are merged into the smallest;
3. **renumbering**: the ids left are renumbered ``1..N`` in order, so objects
   are numbered by their first slice, then in raster order within it.

:func:`link_and_renumber` does steps 2 and 3 reading one or two slices at a
time, so the same code serves a stack in memory (:func:`~napari_mobilesam.segment_stack`),
slices streamed from a work folder (the command line, dask runs) and the
widget's whole-stack run; the result does not depend on the order in which
slices were computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..errors import MobileSAMError
from .params import LinkParams

DEFAULT_LINK_IOU = LinkParams.link_iou


def relabel_in_order(labels: np.ndarray) -> np.ndarray:
    """Renumber ids to ``1..N`` keeping their order; returns int32 (0 stays background)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) >= np.iinfo(np.int32).max:
        raise MobileSAMError("More objects than an int32 label image can hold.")
    return map_ids(labels, ids, np.arange(1, len(ids) + 1)).astype(np.int32)


def slice_offsets(counts: Sequence[int]) -> np.ndarray:
    """``(n_slices,)`` int64: what slice ``k``'s ids ``1..counts[k]`` are offset by (objects on the slices before it)."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def offset_labels(labels: np.ndarray, offset: int) -> np.ndarray:
    """``labels`` as int64 with non-zero ids shifted by ``offset``."""
    labels = np.asarray(labels).astype(np.int64)
    labels[labels > 0] += int(offset)
    return labels


def map_ids(labels: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Replace sorted ids ``old`` by ``new`` (other ids unchanged), vectorised."""
    labels = np.asarray(labels)
    if len(old) == 0:
        return labels.copy()
    position = np.clip(np.searchsorted(old, labels), 0, len(old) - 1)
    hit = old[position] == labels
    out = labels.copy()
    out[hit] = np.asarray(new)[position[hit]]
    return out


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


def link_and_renumber(
    read: Callable[[int], np.ndarray],
    total_ids: int,
    leading_shape: tuple[int, ...],
    *,
    link_3d: bool = True,
    link_iou: float = DEFAULT_LINK_IOU,
) -> tuple[Iterator[np.ndarray], int]:
    """The final planes of a stack and its number of objects (steps 2 and 3 of the module doc).

    ``read(flat)`` gives slice ``flat`` (C order over ``leading_shape``) with
    ids already unique across the stack, all in ``1..total_ids`` (step 1).
    Slices are read one or two at a time, twice (linking, then writing).
    Returns ``(planes, n)``: ``planes`` yields the ``int32`` planes in C order.
    """
    link = LinkParams(link_3d=link_3d, link_iou=link_iou)
    n_slices = int(np.prod(leading_shape, dtype=np.int64))
    root = np.arange(int(total_ids) + 1, dtype=np.int64)  # union-find over ids; a group's root is its smallest id

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = int(root[i])
        return i

    def checked(flat: int) -> np.ndarray:
        labels = np.asarray(read(flat))
        if labels.size and (labels.min() < 0 or labels.max() > total_ids):
            raise MobileSAMError(
                f"Slice {flat} holds ids outside 0..{total_ids}; its labels were changed while the stack was "
                "being segmented. Segment the stack again."
            )
        return labels

    depth = leading_shape[-1] if leading_shape else 1
    if link.link_3d and depth >= 2:
        following = checked(0)
        for flat in range(n_slices - 1):
            current, following = following, checked(flat + 1)
            if flat % depth == depth - 1:
                continue  # last z of one volume, first z of the next (e.g. the next time point)
            for a, b in match_masks(current, following, link.link_iou):
                ra, rb = find(a), find(b)
                if ra != rb:
                    root[max(ra, rb)] = min(ra, rb)
    for i in range(1, len(root)):
        root[i] = find(i)
    kept = np.unique(root[1:])
    if len(kept) >= np.iinfo(np.int32).max:
        raise MobileSAMError("More objects than an int32 label image can hold.")
    final = np.zeros(len(root), dtype=np.int32)
    final[1:] = np.searchsorted(kept, root[1:]) + 1

    def planes() -> Iterator[np.ndarray]:
        for flat in range(n_slices):
            yield final[checked(flat).astype(np.int64, copy=False)]

    return planes(), len(kept)


def link_stack(
    labels: np.ndarray, link_iou: float = DEFAULT_LINK_IOU, *, link_3d: bool = True
) -> np.ndarray:
    """Link and renumber a label stack held in memory (:func:`link_and_renumber` on an array).

    ``labels`` ``(..., Z, Y, X)`` (or ``(Y, X)``) with ids unique across slices, in
    any range; returns int32 labels ``1..N`` numbered by first slice, then by id.
    """
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    dense = map_ids(labels, ids, np.arange(1, len(ids) + 1))
    leading = labels.shape[:-2]
    flat = dense.reshape(-1, *labels.shape[-2:])
    planes, _ = link_and_renumber(lambda k: flat[k], len(ids), leading, link_3d=link_3d, link_iou=link_iou)
    out = np.empty(labels.shape, dtype=np.int32)
    out_flat = out.reshape(-1, *labels.shape[-2:])
    for k, plane in enumerate(planes):
        out_flat[k] = plane
    return out
