"""One cache of image embeddings for the widget, the whole-stack command and scripts.

Encoding a slice is the slow step (about a second on a laptop CPU), so each
embedding is kept twice:

- **in memory**: a least-recently-used cache bounded in bytes (``memory_bytes``);
- **on disk** (on by default): a zarr store per image in the per-user cache
  folder, ``cache_dir() / "embeddings"`` (``NAPARI_MOBILESAM_CACHE`` moves it);
  :mod:`napari_mobilesam.cache.store` describes the layout and how it is written.

An embedding is found by its **key** (:mod:`napari_mobilesam.cache.keys`): a
hash of the slice's pixels, the model's weights, the contrast limits, the
preprocessing version and the encoder's precision. Other weights, other
contrast, another precision or an edited slice therefore miss and are
encoded again. What the disk half does with slices it cannot trust and with
disk problems is :mod:`napari_mobilesam.cache.disk_slots`'s. The instance
maps of micro-sam's decoder are kept beside the embeddings
(:meth:`EmbeddingCache.embedding_and_maps`).

Several slices can be asked for at once (:meth:`EmbeddingCache.embeddings`):
those missing are encoded together, in batches of the device's size.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from ..engine.embedding import ImageEmbedding
from ..engine.preprocessing import check_image_size
from ..errors import MobileSAMError
from .disk_slots import DiskSlots
from .keys import slice_key
from .lru import ByteLRU
from .maps_cache import MapsCache


def _format_bytes(n: int) -> str:
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{n} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _check_slot(image_id: str | None, slice_index: int, n_slices: int) -> tuple[int, int]:
    """``(slice_index, n_slices)`` checked; a slice without ``image_id`` has a one-slice store of its own."""
    if image_id is None:
        return 0, 1
    slice_index, n_slices = int(slice_index), int(n_slices)
    if not 0 <= slice_index < n_slices:
        raise MobileSAMError(
            f"slice_index {slice_index} is outside a stack of {n_slices} slices; pass n_slices = the stack's length."
        )
    return slice_index, n_slices


def _precision(predictor) -> str:
    return getattr(predictor, "precision", "float32")


def _store_id(image_id: str | None, precision: str) -> str | None:
    """Embeddings of another precision live in a store of their own: they never fill each other's slots."""
    return image_id if image_id is None or precision == "float32" else f"{image_id}|{precision}"


class EmbeddingCache:
    """Embeddings of 2D slices, in memory (LRU, bounded in bytes) and on disk (zarr).

    Thread-safe: a GUI worker and a prefetch thread may ask at once; the same
    key is never encoded twice concurrently (the second caller waits for the
    first), and encoding runs outside the locks.

    Args:
        memory_bytes: memory budget in bytes (an embedding is 4 MiB); 0 keeps nothing in memory.
        directory: folder of the disk cache; ``True`` (default) is ``cache_dir() / "embeddings"``,
            resolved on first use; ``None`` or ``False`` keeps embeddings in memory only.

    Returned embeddings are shared with the cache: treat their arrays as read-only.

    Example::

        cache = EmbeddingCache(directory=None)  # memory only
        predictor = Predictor(model)
        for _ in range(2):
            embedding, source = cache.embedding(
                predictor, zyx_stack[0], image_id="stack", slice_index=0, n_slices=len(zyx_stack))
        assert source == "memory"
    """

    def __init__(self, memory_bytes: int = 1 << 30, directory: str | os.PathLike | None | bool = True) -> None:
        self._memory = ByteLRU()
        self._lock = threading.RLock()  # memory, stats, in-flight table
        self._inflight: dict[str, Future] = {}
        self._disk = DiskSlots(directory)
        self.stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0}
        #: The instance maps of micro-sam's decoder, kept beside the embeddings (:meth:`embedding_and_maps`).
        self.maps = MapsCache(self._disk)
        self.memory_bytes = memory_bytes

    # -- settings ------------------------------------------------------------

    @property
    def memory_bytes(self) -> int:
        """Memory budget in bytes; lowering it evicts least-recently-used embeddings (instance maps get a quarter more)."""
        return self._memory.limit

    @memory_bytes.setter
    def memory_bytes(self, value: int) -> None:
        value = int(value)
        if value < 0:
            raise MobileSAMError(f"memory_bytes must be >= 0, got {value}.")
        with self._lock:
            self._memory.limit = value
            self.maps.memory_bytes = value // 4

    @property
    def directory(self) -> Path | None:
        """Folder of the disk cache, or ``None`` when the disk cache is off (asked for, or unusable: :attr:`disk_problem`)."""
        return self._disk.directory

    @property
    def disk_problem(self) -> str | None:
        """Why the disk cache asked for is off (e.g. ``"/x is a file, not a folder"``), or ``None``."""
        return self._disk.problem

    @property
    def disk_folder(self) -> Path | None:
        """The folder asked for, even when it is unusable (see :attr:`disk_problem`); ``None``: disk cache off."""
        return self._disk.folder

    # -- keys ----------------------------------------------------------------

    def slice_key(
        self, image_slice, model, contrast_limits: tuple[float, float] | None = None, precision: str = "float32"
    ) -> str:
        """Hex key of one 2D slice ``(H, W)`` or ``(H, W, C)`` encoded by ``model`` in ``precision`` with ``contrast_limits``."""
        return slice_key(image_slice, model, contrast_limits, precision)

    # -- the main entry points -----------------------------------------------

    def embedding(
        self,
        predictor,
        image_slice,
        *,
        contrast_limits: tuple[float, float] | None = None,
        image_id: str | None = None,
        slice_index: int = 0,
        n_slices: int = 1,
    ) -> tuple[ImageEmbedding, str]:
        """The embedding of one 2D slice, from memory, disk or ``predictor.embed``.

        ``image_slice`` is ``(H, W)`` or ``(H, W, 3|4)``; ``slice_index`` is its
        index along the first axis of a ``(z, y, x)`` stack of ``n_slices``
        slices called ``image_id`` (``None``: a store of its own). Returns
        ``(embedding, source)`` with ``source`` ``"memory"``, ``"disk"`` or ``"computed"``.
        """
        slot = {"image_id": image_id, "slice_indices": [slice_index], "n_slices": n_slices}
        return self.embeddings(predictor, [image_slice], contrast_limits=contrast_limits, **slot)[0]

    def embeddings(
        self,
        predictor,
        image_slices,
        *,
        contrast_limits: tuple[float, float] | None = None,
        image_id: str | None = None,
        slice_indices=None,
        n_slices: int = 1,
        batch_size: int | None = None,
    ) -> list[tuple[ImageEmbedding, str]]:
        """:meth:`embedding` of several slices of one stack, the misses encoded together.

        ``slice_indices``: each slice's index in the stack (default ``0, 1, ...``).
        Slices missing from memory and disk go to ``predictor.embed_many``
        (``batch_size`` per forward pass, default the device's), one at a time
        to ``predictor.embed`` when only one is missing. A slice another thread
        is encoding is waited for, not encoded again. Returns ``(embedding,
        source)`` per slice, in order.
        """
        return self._embeddings(predictor, image_slices, contrast_limits, image_id, slice_indices, n_slices, batch_size)[0]

    def _embeddings(self, predictor, image_slices, contrast_limits, image_id, slice_indices, n_slices, batch_size):
        """:meth:`embeddings`, and the slices' keys and store."""
        image_slices = list(image_slices)
        indices = range(len(image_slices)) if slice_indices is None else list(slice_indices)
        slots = [_check_slot(image_id, index, n_slices) for index in indices]
        for plane in image_slices:
            check_image_size(plane)  # a plane too large to segment is refused before it is read
        pixels = [np.asarray(plane) for plane in image_slices]  # a dask or zarr slice is read once
        precision = _precision(predictor)
        keys = [self.slice_key(plane, predictor.model, contrast_limits, precision) for plane in pixels]
        store_id = _store_id(image_id, precision)
        results: list = [None] * len(keys)
        owned: dict[int, Future] = {}
        waiting: list[tuple[int, Future]] = []
        with self._lock:
            for position, key in enumerate(keys):
                cached = self._memory.get(key)
                if cached is not None:
                    self.stats["memory_hits"] += 1
                    results[position] = (cached, "memory")
                elif key in self._inflight:  # another thread (or an earlier copy in this call) encodes it
                    waiting.append((position, self._inflight[key]))
                else:
                    owned[position] = self._inflight[key] = Future()
        try:
            missing = []
            for position in owned:
                embedding = self._disk.get(keys[position], store_id, slots[position][0])
                if embedding is None:
                    missing.append(position)
                else:
                    results[position] = (embedding, "disk")
            if len(missing) == 1:
                encoded = [predictor.embed(pixels[missing[0]], contrast_limits)]
            elif missing:
                encoded = predictor.embed_many([pixels[p] for p in missing], contrast_limits, batch_size=batch_size)
            for position, embedding in zip(missing, encoded if missing else [], strict=True):
                results[position] = (embedding, "computed")
                self._disk.put(keys[position], embedding, store_id, *slots[position])
            with self._lock:
                for position in owned:
                    embedding, source = results[position]
                    self.stats["disk_hits" if source == "disk" else "misses"] += 1
                    self._memory.put(keys[position], embedding)
            for position, future in owned.items():
                future.set_result(results[position][0])
        except BaseException as error:
            for future in owned.values():
                if not future.done():
                    future.set_exception(error)
            raise
        finally:
            with self._lock:
                for position, future in owned.items():
                    if self._inflight.get(keys[position]) is future:
                        del self._inflight[keys[position]]
        for position, future in waiting:
            results[position] = (future.result(), "memory")
            with self._lock:
                self.stats["memory_hits"] += 1
        return results, keys, store_id

    def embedding_and_maps(self, predictor, image_slice, **where) -> tuple[ImageEmbedding, np.ndarray, str]:
        """The embedding of one 2D slice (as :meth:`embedding`, with its keywords ``contrast_limits``,
        ``image_id``, ``slice_index`` and ``n_slices``) and the instance maps of its model's decoder.

        The maps (``(3, H, W)`` float32, :func:`~napari_mobilesam.segment.instance_maps.instance_maps`
        of ``predictor.model.instance_decoder``) are kept beside the embedding, in
        memory and in the same store on disk, under the embedding's key and the
        decoder's checksum (:class:`~napari_mobilesam.cache.maps_cache.MapsCache`).
        ``known``: the slice's ``(embedding, source)`` already taken from this cache (a batch's), used as it is.
        Returns ``(embedding, maps, source of the embedding)``.
        """
        from ..segment.instance_everything import instance_decoder_of

        decoder = instance_decoder_of(predictor.model, "ais")
        known = where.pop("known", None)
        contrast_limits, image_id = where.pop("contrast_limits", None), where.pop("image_id", None)
        slice_index, n_slices = _check_slot(image_id, where.pop("slice_index", 0), where.pop("n_slices", 1))
        if where:
            raise TypeError(f"embedding_and_maps() got unexpected keyword arguments {sorted(where)}")
        if known is None:
            [(embedding, source)], [key], store_id = self._embeddings(
                predictor, [image_slice], contrast_limits, image_id, [slice_index], n_slices, None
            )
        else:
            (embedding, source), precision = known, _precision(predictor)
            key = self.slice_key(np.asarray(image_slice), predictor.model, contrast_limits, precision)
            store_id = _store_id(image_id, precision)
        store = self._disk.store_path(key, store_id)
        maps = self.maps.maps(key, embedding, decoder, store, 0 if image_id is None else slice_index, n_slices)
        return embedding, maps, source

    # -- get / put -----------------------------------------------------------

    def get(self, key: str, image_id: str | None = None, slice_index: int = 0) -> ImageEmbedding | None:
        """The embedding stored under ``key`` (memory first, then disk), or ``None``."""
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                self.stats["memory_hits"] += 1
                return cached
        embedding = self._disk.get(key, image_id, slice_index)
        with self._lock:
            if embedding is None:
                self.stats["misses"] += 1
            else:
                self.stats["disk_hits"] += 1
                self._memory.put(key, embedding)
        return embedding

    def put(
        self, key: str, embedding: ImageEmbedding, image_id: str | None = None, slice_index: int = 0, n_slices: int = 1
    ) -> None:
        """Store ``embedding`` under ``key`` in memory and (when enabled) on disk as slice ``slice_index``."""
        if not isinstance(embedding, ImageEmbedding):
            raise MobileSAMError(f"EmbeddingCache.put expects an ImageEmbedding, got {type(embedding).__name__}.")
        slice_index, n_slices = _check_slot(image_id, slice_index, n_slices)
        with self._lock:
            self._memory.put(key, embedding)
        self._disk.put(key, embedding, image_id, slice_index, n_slices)

    def contains(self, key: str, image_id: str | None = None, slice_index: int = 0) -> bool:
        """Whether ``key`` is in memory or validly on disk (reads and checks the chunk)."""
        with self._lock:
            if key in self._memory:
                return True
        return self._disk.get(key, image_id, slice_index) is not None

    def __contains__(self, key: str) -> bool:
        return self.contains(key)

    # -- clearing and size ---------------------------------------------------

    def clear(self, memory: bool = True, disk: bool = True) -> None:
        """Forget embeddings in memory and/or delete this cache's stores on disk."""
        if memory:
            with self._lock:
                self._memory.clear()
                self.maps.clear_memory()
        if disk:
            self._disk.clear()

    @property
    def memory_bytes_used(self) -> int:
        """Bytes of embeddings held in memory."""
        with self._lock:
            return self._memory.used

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)

    def disk_bytes_used(self) -> int:
        """Bytes of this cache's files on disk (0 when the disk cache is off)."""
        return self._disk.bytes_used()

    def describe(self) -> str:
        """One line for the user, e.g. ``"12 embeddings in memory (48 MiB of 1.0 GiB), 130 MiB on disk at /path"``."""
        with self._lock:
            count, used = len(self._memory), self._memory.used
        text = f"{count} embedding{'' if count == 1 else 's'} in memory ({_format_bytes(used)} of "
        text += f"{_format_bytes(self._memory.limit)})"
        directory = self.directory
        if directory is None:
            problem = self.disk_problem
            return text + (f", disk cache off ({problem})" if problem else ", disk cache off")
        return text + f", {_format_bytes(self.disk_bytes_used())} on disk at {directory}"
