"""The embedding cache's disk half: a zarr store per image, and what happens when the disk misbehaves.

A slice that is not trusted (half-written, corrupt, other weights or
contrast) is a miss; a store whose metadata is unreadable or whose shape
does not fit ``n_slices`` is deleted and rebuilt. Disk problems (full,
read-only) never break segmentation: they are logged once and the cache
carries on in memory. A folder that cannot be one (a file in the way) turns
the disk off: :attr:`DiskSlots.directory` is then ``None`` and
:attr:`DiskSlots.problem` says why. :mod:`napari_mobilesam.cache.store`
describes the layout and how a slice is written.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from ..engine.embedding import ImageEmbedding
from ..io.files import remove_path
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

logger = logging.getLogger("napari_mobilesam.cache.embedding_cache")


class DiskSlots:
    """Embeddings on disk, slice ``slice_index`` of image ``image_id``'s store (thread-safe).

    ``setting``: a folder; ``True``: ``cache_dir() / "embeddings"``, resolved
    on first use; ``None`` or ``False``: no disk.
    """

    def __init__(self, setting: str | os.PathLike | None | bool) -> None:
        self._setting = setting
        self._folder: Path | None = None
        self._problem: str | None = None
        self.lock = threading.RLock()  #: every disk read and write (the instance maps' too)
        self._warned: set[str] = set()  # disk problems are logged once, not once per slice

    @property
    def folder(self) -> Path | None:
        """The folder asked for, resolved (even when unusable); ``None`` when no disk was asked for."""
        setting = self._setting
        if setting is None or setting is False:
            return None
        if self._folder is None:
            if setting is True:
                from ..engine.cache_folder import cache_dir

                folder = cache_dir() / "embeddings"
            else:
                folder = Path(setting).expanduser().absolute()
            self._problem = folder_problem(folder)
            self._folder = folder
        return self._folder

    @property
    def directory(self) -> Path | None:
        """The folder in use, or ``None`` when the disk is off (asked for, or unusable: :attr:`problem`)."""
        folder = self.folder
        return None if self._problem else folder

    @property
    def problem(self) -> str | None:
        """Why the folder asked for cannot be used, or ``None``."""
        self.folder  # noqa: B018 -- resolves the folder and checks it
        return self._problem

    def warn_once(self, kind: str, message: str, *args) -> None:
        """Log a disk problem of this ``kind`` once, not once per slice."""
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message, *args)

    def store_path(self, key: str, image_id: str | None) -> Path | None:
        """The store of image ``image_id`` (a slice without one: of its key), or ``None`` when the disk is off."""
        directory = self.directory
        if directory is None:
            if self._problem:
                self.warn_once(
                    "folder",
                    "Embedding cache: %s; the disk cache is off, embeddings are kept in memory only. "
                    "Point NAPARI_MOBILESAM_CACHE (or directory=) at a folder.",
                    self._problem,
                )
            return None
        return directory / store_name(key if image_id is None else image_id)

    def get(self, key: str, image_id: str | None, slice_index: int) -> ImageEmbedding | None:
        """The embedding in slot ``slice_index`` of ``image_id``'s store if it holds ``key``'s, else ``None``."""
        path = self.store_path(key, image_id)
        if path is None:
            return None
        if image_id is None:
            slice_index = 0
        with self.lock:
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

    def put(self, key: str, embedding: ImageEmbedding, image_id: str | None, slice_index: int, n_slices: int) -> None:
        """Write ``embedding`` as ``key``'s into slot ``slice_index`` of a store of ``n_slices`` (problems logged once)."""
        path = self.store_path(key, image_id)
        if path is None:
            return
        with self.lock:
            try:
                features = self._open_or_build(path, n_slices)
                write_slice(path, features, key, embedding, slice_index)
            except Exception as error:
                self.warn_once(
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

    def clear(self) -> None:
        """Delete this cache's stores (a user's files in the same folder are never deleted)."""
        directory = self.directory
        if directory is None:
            return
        with self.lock:
            for entry in store_entries(directory):
                if is_own_entry(entry):
                    remove_path(entry)

    def bytes_used(self) -> int:
        """Bytes of this cache's files on disk (0 when the disk is off)."""
        directory = self.directory
        return 0 if directory is None else store_bytes(directory)
