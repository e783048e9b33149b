"""Instance maps kept beside their embeddings: micro-sam's decoder runs once per slice, model and decoder.

The maps of a slice (``(3, H, W)`` float32, :func:`~napari_mobilesam.segment.instance_maps.instance_maps`)
cost far more than its embedding (the decoder runs at 1024 x 1024 whatever the
image size), so AIS and APG on a slice seen before, or with other settings,
take them from here: in memory (least recently used, bounded in bytes) and in
the embedding's own zarr store on disk (:func:`~napari_mobilesam.cache.store.write_maps`,
record last, checksummed like the embeddings). Their key is the embedding's key
(pixels, weights, contrast) extended by the decoder's weights checksum
(:func:`~napari_mobilesam.cache.keys.maps_key`): other weights, another
decoder or an edited slice miss. A problem on disk is a miss, never an error.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from .keys import maps_key
from .lru import ByteLRU
from .store import CorruptSliceError, read_maps, write_maps

logger = logging.getLogger(__name__)


class MapsCache:
    """Instance maps per slice (owned by an :class:`~napari_mobilesam.cache.embedding_cache.EmbeddingCache`).

    ``disk``: the embeddings' :class:`~napari_mobilesam.cache.disk_slots.DiskSlots`, whose lock serialises
    disk access with theirs and which logs each kind of disk problem once.
    """

    def __init__(self, disk, memory_bytes: int = 0) -> None:
        self._memory = ByteLRU(memory_bytes)
        self._lock = threading.Lock()
        self._disk = disk
        self.stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0}

    @property
    def memory_bytes(self) -> int:
        return self._memory.limit

    @memory_bytes.setter
    def memory_bytes(self, value: int) -> None:
        with self._lock:
            self._memory.limit = value

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    def maps(self, embedding_key: str, embedding, decoder, store: Path | None, slice_index: int, n_slices: int):
        """The maps of the slice whose embedding is ``embedding`` (key ``embedding_key``), decoded by ``decoder``:
        from memory, from ``store`` (the embedding's store; None: no disk) or computed and kept."""
        key = maps_key(embedding_key, decoder)
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                self.stats["memory_hits"] += 1
                return cached
        maps = self._disk_get(store, key, slice_index)
        source = "disk_hits"
        if maps is None:
            from ..segment.instance_maps import instance_maps

            maps = instance_maps(embedding, decoder)
            source = "misses"
            self._disk_put(store, key, maps, slice_index, n_slices)
        maps.setflags(write=False)  # shared by every caller
        with self._lock:
            self.stats[source] += 1
            self._memory.put(key, maps)
        return maps

    def _disk_get(self, store: Path | None, key: str, slice_index: int) -> np.ndarray | None:
        if store is None:
            return None
        with self._disk.lock:
            try:
                return read_maps(store, key, slice_index)
            except FileNotFoundError:
                return None
            except CorruptSliceError:
                logger.warning("Embedding cache: the maps of slice %s of %s are corrupt; computing them again.", slice_index, store)
            except Exception as error:  # half-written or damaged: never trusted
                logger.info("Embedding cache: cannot read the maps of slice %s of %s (%s).", slice_index, store, error)
        return None

    def _disk_put(self, store: Path | None, key: str, maps: np.ndarray, slice_index: int, n_slices: int) -> None:
        if store is None:
            return
        with self._disk.lock:
            try:
                write_maps(store, key, maps, slice_index, n_slices)
            except Exception as error:
                self._disk.warn_once(
                    "maps", "Embedding cache: cannot write instance maps to %s (%s); keeping them in memory only.", store, error
                )
