"""One cache of image embeddings for the widget, the whole-stack command and scripts.

Encoding a slice is the slow step (about a second on a laptop CPU), so each
embedding is kept twice:

- **in memory**: a least-recently-used cache bounded in bytes (``memory_bytes``);
- **on disk** (on by default): a zarr store per image in the per-user cache
  folder, ``cache_dir() / "embeddings"`` (``NAPARI_MOBILESAM_CACHE`` moves it);
  :mod:`napari_mobilesam.cache.store` describes the layout and how it is written.

An embedding is found by its **key** (:mod:`napari_mobilesam.cache.keys`): a
hash of the slice's pixels, the model's weights, the contrast limits and the
preprocessing version. Other weights, other contrast or an edited slice
therefore miss and are encoded again.

A slice on disk that is not trusted (half-written, corrupt, other weights or
contrast) is a miss, encoded again and rewritten; a store whose metadata is
unreadable or whose shape does not fit ``n_slices`` is deleted and rebuilt.
Disk problems (full, read-only) never break segmentation: they are logged
once and the cache carries on in memory. A folder that cannot be one (a file
in the way) turns the disk cache off: :attr:`EmbeddingCache.directory` is
then ``None`` and :attr:`EmbeddingCache.disk_problem` says why.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from ..engine.embedding import ImageEmbedding
from ..engine.preprocessing import check_image_size
from ..errors import MobileSAMError
from ..io.files import remove_path
from .keys import slice_key
from .lru import ByteLRU
from .maps_cache import MapsCache
from .store import (
    CorruptSliceError,
    create_store,
    folder_problem,
    is_own_entry,
    open_features,
    read_slice,
    store_bytes,
    store_entries,
    store_name,
    write_slice,
)

logger = logging.getLogger(__name__)


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
        self._disk_lock = threading.RLock()  # every disk read and write
        self._inflight: dict[str, Future] = {}
        self._directory_setting = directory
        self._directory: Path | None = None
        self._disk_problem: str | None = None
        self._warned: set[str] = set()  # disk problems are logged once, not once per slice
        self.stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0}
        #: The instance maps of micro-sam's decoder, kept beside the embeddings (:meth:`embedding_and_maps`).
        self.maps = MapsCache(self._disk_lock, self._warn_once)
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
        setting = self._directory_setting
        if setting is None or setting is False:
            return None
        if self._directory is None:
            if setting is True:
                from ..engine.cache_folder import cache_dir

                folder = cache_dir() / "embeddings"
            else:
                folder = Path(setting).expanduser().absolute()
            self._disk_problem = folder_problem(folder)
            self._directory = folder
        return None if self._disk_problem else self._directory

    @property
    def disk_problem(self) -> str | None:
        """Why the disk cache asked for is off (e.g. ``"/x is a file, not a folder"``), or ``None``."""
        self.directory  # noqa: B018 -- resolves the folder and checks it
        return self._disk_problem

    def _warn_once(self, kind: str, message: str, *args) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message, *args)

    # -- keys ----------------------------------------------------------------

    def slice_key(self, image_slice, model, contrast_limits: tuple[float, float] | None = None) -> str:
        """Hex key of one 2D slice ``(H, W)`` or ``(H, W, C)`` encoded by ``model`` with ``contrast_limits``."""
        return slice_key(image_slice, model, contrast_limits)

    # -- the main entry point ------------------------------------------------

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
        slot = _check_slot(image_id, slice_index, n_slices)
        key, pixels = self._read(image_slice, predictor, contrast_limits)
        return self._embedding(key, predictor, pixels, contrast_limits, image_id, *slot)

    def _read(self, image_slice, predictor, contrast_limits) -> tuple[str, np.ndarray]:
        """``(key, pixels)`` of a slice: its size checked before it is read, then read once (a dask or zarr slice)."""
        check_image_size(image_slice)
        pixels = np.asarray(image_slice)
        return self.slice_key(pixels, predictor.model, contrast_limits), pixels

    def embedding_and_maps(self, predictor, image_slice, **where) -> tuple[ImageEmbedding, np.ndarray, str]:
        """The embedding of one 2D slice (as :meth:`embedding`, with its keywords ``contrast_limits``,
        ``image_id``, ``slice_index`` and ``n_slices``) and the instance maps of its model's decoder.

        The maps (``(3, H, W)`` float32, :func:`~napari_mobilesam.segment.instance_maps.instance_maps`
        of ``predictor.model.instance_decoder``) are kept beside the embedding, in
        memory and in the same store on disk, under the embedding's key and the
        decoder's checksum (:class:`~napari_mobilesam.cache.maps_cache.MapsCache`).
        Returns ``(embedding, maps, source of the embedding)``.
        """
        from ..segment.instance_everything import instance_decoder_of

        decoder = instance_decoder_of(predictor.model, "ais")
        contrast_limits, image_id = where.pop("contrast_limits", None), where.pop("image_id", None)
        slice_index, n_slices = _check_slot(image_id, where.pop("slice_index", 0), where.pop("n_slices", 1))
        if where:
            raise TypeError(f"embedding_and_maps() got unexpected keyword arguments {sorted(where)}")
        key, pixels = self._read(image_slice, predictor, contrast_limits)
        embedding, source = self._embedding(key, predictor, pixels, contrast_limits, image_id, slice_index, n_slices)
        store = self._store_path(key, image_id)
        maps = self.maps.maps(key, embedding, decoder, store, 0 if image_id is None else slice_index, n_slices)
        return embedding, maps, source

    def _embedding(self, key, predictor, pixels, contrast_limits, image_id, slice_index, n_slices):
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                self.stats["memory_hits"] += 1
                return cached, "memory"
            future = self._inflight.get(key)
            owner = future is None
            if owner:
                future = self._inflight[key] = Future()
        if not owner:
            # Another thread is encoding this slice: share its result.
            embedding = future.result()
            with self._lock:
                self.stats["memory_hits"] += 1
            return embedding, "memory"
        try:
            embedding = self._disk_get(key, image_id, slice_index)
            if embedding is not None:
                source = "disk"
            else:
                embedding = predictor.embed(pixels, contrast_limits)
                source = "computed"
                self._disk_put(key, embedding, image_id, slice_index, n_slices)
            with self._lock:
                self.stats["disk_hits" if source == "disk" else "misses"] += 1
                self._memory.put(key, embedding)
            future.set_result(embedding)
            return embedding, source
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    # -- get / put -----------------------------------------------------------

    def get(self, key: str, image_id: str | None = None, slice_index: int = 0) -> ImageEmbedding | None:
        """The embedding stored under ``key`` (memory first, then disk), or ``None``."""
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                self.stats["memory_hits"] += 1
                return cached
        embedding = self._disk_get(key, image_id, slice_index)
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
        self._disk_put(key, embedding, image_id, slice_index, n_slices)

    def contains(self, key: str, image_id: str | None = None, slice_index: int = 0) -> bool:
        """Whether ``key`` is in memory or validly on disk (reads and checks the chunk)."""
        with self._lock:
            if key in self._memory:
                return True
        return self._disk_get(key, image_id, slice_index) is not None

    def __contains__(self, key: str) -> bool:
        return self.contains(key)

    # -- clearing and size ---------------------------------------------------

    def clear(self, memory: bool = True, disk: bool = True) -> None:
        """Forget embeddings in memory and/or delete this cache's stores on disk."""
        if memory:
            with self._lock:
                self._memory.clear()
                self.maps.clear_memory()
        directory = self.directory
        if disk and directory is not None:
            with self._disk_lock:
                for entry in store_entries(directory):
                    if is_own_entry(entry):  # a user's files in the same folder are never deleted
                        remove_path(entry)

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
        directory = self.directory
        if directory is None:
            return 0
        return store_bytes(directory)

    def describe(self) -> str:
        """One line for the user, e.g. ``"12 embeddings in memory (48 MiB of 1.0 GiB), 130 MiB on disk at /path"``."""
        with self._lock:
            count, used = len(self._memory), self._memory.used
        text = f"{count} embedding{'' if count == 1 else 's'} in memory ({_format_bytes(used)} of "
        text += f"{_format_bytes(self._memory.limit)})"
        directory = self.directory
        if directory is None:
            return text + (f", disk cache off ({self._disk_problem})" if self._disk_problem else ", disk cache off")
        return text + f", {_format_bytes(self.disk_bytes_used())} on disk at {directory}"

    # -- disk ----------------------------------------------------------------

    def _store_path(self, key: str, image_id: str | None) -> Path | None:
        directory = self.directory
        if directory is None:
            if self._disk_problem:
                self._warn_once(
                    "folder",
                    "Embedding cache: %s; the disk cache is off, embeddings are kept in memory only. "
                    "Point NAPARI_MOBILESAM_CACHE (or directory=) at a folder.",
                    self._disk_problem,
                )
            return None
        return directory / store_name(key if image_id is None else image_id)

    def _disk_get(self, key: str, image_id: str | None, slice_index: int) -> ImageEmbedding | None:
        path = self._store_path(key, image_id)
        if path is None:
            return None
        if image_id is None:
            slice_index = 0
        with self._disk_lock:
            try:
                return read_slice(path, key, slice_index)
            except FileNotFoundError:
                return None
            except CorruptSliceError:
                logger.warning("Embedding cache: slice %s of %s is corrupt; encoding it again.", slice_index, path)
                return None
            except Exception as error:  # half-written or damaged: never trusted
                logger.info("Embedding cache: cannot read slice %s of %s (%s).", slice_index, path, error)
                return None

    def _disk_put(
        self, key: str, embedding: ImageEmbedding, image_id: str | None, slice_index: int, n_slices: int
    ) -> None:
        path = self._store_path(key, image_id)
        if path is None:
            return
        with self._disk_lock:
            try:
                features = self._open_or_build(path, n_slices)
                write_slice(path, features, key, embedding, slice_index)
            except Exception as error:
                self._warn_once(
                    "write", "Embedding cache: cannot write to %s (%s); keeping embeddings in memory only.", path, error
                )
                logger.info("Embedding cache: cannot write slice %s to %s (%s).", slice_index, path, error)

    def _open_or_build(self, path: Path, n_slices: int):
        """The ``features`` array of a valid store at ``path`` for ``n_slices`` slices, rebuilding it if needed."""
        if path.exists():
            try:
                return open_features(path, mode="r+", n_slices=n_slices)
            except Exception as error:
                logger.info("Embedding cache: rebuilding %s (%s).", path, error)
                remove_path(path)
        return create_store(path, n_slices)
