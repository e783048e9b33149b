"""The embedding cache's stores on disk: one zarr store per image, written crash-safely.

Layout (zarr v3, no pickle anywhere)::

    <directory>/
      <readable-prefix>-<hash16>.zarr/   one store per image_id (image_id None: named by the slice key)
        zarr.json                        group; attribute "napari_mobilesam" =
                                         {"format": "embedding-cache", "version": 1, "n_slices": N}
        features/                        float32 array (n_slices, 256, 64, 64), chunks (1, 256, 64, 64),
          zarr.json                      uncompressed: one chunk file per slice (features/c/<z>/0/0/0)
          c/<z>/0/0/0
        records/<z>.json                 slice z: {"version", "key", "checksum" (BLAKE2b of the chunk's
                                         float32 little-endian bytes), "original_size", "input_size"}
        maps/                            (once a slice's instance maps are kept) float32 (n_slices, 3, H, W),
                                         chunks (1, 3, H, W), zstd: micro-sam's decoder maps of each slice
        maps_records/<z>.json            slice z's maps: {"version", "key" (embedding key + decoder), "checksum"}
      .tmp-*                             stores being built (records/.tmp-* inside a store: records
                                         being written); removed with the stores

A slice (and a slice's maps, :func:`write_maps`) is written record-last (:func:`write_slice`): its old record is
deleted, the chunk is written, then the record is written to a temporary file
and moved into place (``os.replace``). A slice is trusted (:func:`read_slice`)
only if its record parses, its key is the one asked for and the chunk read back
has the record's checksum. A store is valid only if its metadata names this
format and version and its shape fits (:func:`open_features`); new stores are
built in a ``.tmp-`` folder and renamed into place (:func:`create_store`).

These functions raise on any problem; :class:`~napari_mobilesam.cache.embedding_cache.EmbeddingCache`
decides what a problem means (a miss, a rebuild) and logs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path

import numpy as np

from ..engine.embedding import EMBEDDING_SHAPE, ImageEmbedding
from ..io.files import TMP_PREFIX, remove_path, write_atomic

STORE_FORMAT = "embedding-cache"
STORE_VERSION = 1
_ATTR = "napari_mobilesam"


class CorruptSliceError(ValueError):
    """A slice's chunk does not have the checksum its record states."""


def store_name(image_id: str) -> str:
    """The file-system-safe folder name of ``image_id``'s store: a readable prefix and a hash."""
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "_", image_id)[:40].strip("_-") or "image"
    return f"{prefix}-{hashlib.blake2b(image_id.encode(), digest_size=8).hexdigest()}.zarr"


def store_entries(directory: Path) -> list[Path]:
    """The stores (``*.zarr``) and stores being built (``.tmp-*``) in ``directory``; none if it is unreadable."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    return [entry for entry in entries if entry.name.endswith(".zarr") or entry.name.startswith(TMP_PREFIX)]


def is_own_entry(entry: Path) -> bool:
    """Whether ``entry`` of :func:`store_entries` is a store (or a store being built) of this cache.

    Stores carry this format's attribute; stores being built have our
    ``.tmp-<uuid>`` names. Anything else in the folder is someone else's.
    """
    if entry.is_symlink():
        return False
    if re.fullmatch(rf"{re.escape(TMP_PREFIX)}[0-9a-f]{{32}}\.zarr", entry.name):
        return True
    try:
        meta = json.loads((entry / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (meta.get("attributes", {}).get(_ATTR) or {}).get("format") == STORE_FORMAT


def folder_problem(directory: Path) -> str | None:
    """Why the cache cannot keep stores in ``directory`` -- a file in the way, a parent it may not write in -- or None.

    Read from the nearest part of the path that exists; nothing is created.
    """
    for folder in (directory, *directory.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder"
            if folder != directory and not os.access(folder, os.W_OK | os.X_OK):
                return f"{directory} cannot be created: no permission to write in {folder}"
            return None
    return None


def store_bytes(directory: Path) -> int:
    """Bytes of this cache's stores in ``directory`` (entries that :func:`is_own_entry` recognises)."""
    total = 0
    for entry in filter(is_own_entry, store_entries(directory)):
        paths = [entry] if entry.is_file() else entry.rglob("*")
        for path in paths:
            try:
                if path.is_file():
                    total += path.stat().st_size
            except OSError:
                pass  # removed meanwhile
    return total


def features_checksum(features: np.ndarray) -> str:
    """BLAKE2b of ``features`` as float32 little-endian bytes."""
    return hashlib.blake2b(np.ascontiguousarray(features, dtype="<f4").tobytes(), digest_size=32).hexdigest()


def read_slice(path: Path, key: str, slice_index: int) -> ImageEmbedding | None:
    """Slice ``slice_index`` of the store at ``path`` if its record is for ``key`` and its chunk checks out.

    ``None`` when the record is of another version or key; raises
    ``FileNotFoundError`` when there is no record, :class:`CorruptSliceError`
    when the chunk's checksum is not the record's, and whatever json or zarr
    raise for a damaged store.
    """
    record = json.loads((path / "records" / f"{int(slice_index)}.json").read_text(encoding="utf-8"))
    if record.get("version") != STORE_VERSION or record.get("key") != key:
        return None
    features = open_features(path, mode="r")[int(slice_index)]
    if features_checksum(features) != record.get("checksum"):
        raise CorruptSliceError(f"slice {slice_index} of {path} does not match its checksum")
    return ImageEmbedding(features, tuple(record["original_size"]), tuple(record["input_size"]))


def write_slice(path: Path, features, key: str, embedding: ImageEmbedding, slice_index: int) -> None:
    """Write ``embedding`` as slice ``slice_index`` of the store at ``path`` (``features`` its open array), record last."""
    record_path = path / "records" / f"{slice_index}.json"
    record_path.unlink(missing_ok=True)  # no record may describe a chunk being rewritten
    features[slice_index] = embedding.features
    record = {
        "version": STORE_VERSION,
        "key": key,
        "checksum": features_checksum(embedding.features),
        "original_size": list(embedding.original_size),
        "input_size": list(embedding.input_size),
    }
    write_atomic(record_path, json.dumps(record).encode("utf-8"))


def create_store(path: Path, n_slices: int):
    """Build a store for ``n_slices`` slices at ``path`` (in a ``.tmp-`` folder, renamed into place); its ``features``.

    If another process renames its store into place first, that store is opened instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}.zarr"
    try:
        _build_store(staging, n_slices)
        os.rename(staging, path)
    except OSError:
        if not path.exists():  # a real failure, not another process winning the race
            raise
    finally:
        if staging.exists():
            remove_path(staging)
    return open_features(path, mode="r+", n_slices=n_slices)


def _build_store(path: Path, n_slices: int) -> None:
    import zarr

    attributes = {_ATTR: {"format": STORE_FORMAT, "version": STORE_VERSION, "n_slices": n_slices}}
    group = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=attributes)
    group.create_array(
        "features",
        shape=(n_slices, *EMBEDDING_SHAPE),
        chunks=(1, *EMBEDDING_SHAPE),
        dtype="float32",
        compressors=None,
        fill_value=0.0,
    )
    (path / "records").mkdir()


def open_features(path: Path, mode: str, n_slices: int | None = None):
    """Open and check a store's metadata; raises ``ValueError`` when it is not a valid store."""
    import zarr

    group = zarr.open_group(str(path), mode=mode, zarr_format=3)
    meta = group.attrs.get(_ATTR)
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
        raise ValueError("not an embedding-cache store of this version")
    features = group["features"]
    stored_slices = meta.get("n_slices")
    if not isinstance(features, zarr.Array) or features.shape != (stored_slices, *EMBEDDING_SHAPE):
        raise ValueError(f"features shape {getattr(features, 'shape', None)} does not match n_slices {stored_slices}")
    if features.dtype != np.float32 or tuple(features.chunks) != (1, *EMBEDDING_SHAPE):
        raise ValueError(f"unexpected features dtype {features.dtype} or chunks {features.chunks}")
    if n_slices is not None and stored_slices != n_slices:
        raise ValueError(f"store holds {stored_slices} slices, not {n_slices}")
    if not (path / "records").is_dir():
        raise ValueError("records folder missing")
    return features


MAPS_ARRAY = "maps"
MAPS_RECORDS = "maps_records"


def read_maps(path: Path, key: str, slice_index: int) -> np.ndarray | None:
    """Slice ``slice_index``'s instance maps in the store at ``path`` if its maps record is for ``key`` and checks out.

    Raises as :func:`read_slice` does (``FileNotFoundError`` without a record).
    """
    import zarr

    record = json.loads((path / MAPS_RECORDS / f"{int(slice_index)}.json").read_text(encoding="utf-8"))
    if record.get("version") != STORE_VERSION or record.get("key") != key:
        return None
    maps = np.asarray(zarr.open_group(str(path), mode="r", zarr_format=3)[MAPS_ARRAY][int(slice_index)])
    if features_checksum(maps) != record.get("checksum"):
        raise CorruptSliceError(f"the maps of slice {slice_index} of {path} do not match their checksum")
    return maps


def write_maps(path: Path, key: str, maps: np.ndarray, slice_index: int, n_slices: int) -> None:
    """Write ``maps`` ``(3, H, W)`` as slice ``slice_index``'s in the store at ``path`` (a valid store), record last.

    The ``maps`` array is made on first use, or made again when its shape does not fit (its records go with it).
    """
    import zarr

    open_features(path, mode="r", n_slices=n_slices)  # the embedding's store, valid
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    shape = (n_slices, *maps.shape)
    array = group.get(MAPS_ARRAY)
    if array is None or array.shape != shape or array.dtype != np.float32:
        if array is not None:
            del group[MAPS_ARRAY]
            remove_path(path / MAPS_RECORDS)
        try:
            array = group.create_array(MAPS_ARRAY, shape=shape, chunks=(1, *maps.shape), dtype="float32", fill_value=0.0)
        except Exception:  # another process made it first: use theirs if it fits
            array = zarr.open_group(str(path), mode="r+", zarr_format=3)[MAPS_ARRAY]
            if array.shape != shape:
                raise
    (path / MAPS_RECORDS).mkdir(exist_ok=True)
    record_path = path / MAPS_RECORDS / f"{slice_index}.json"
    record_path.unlink(missing_ok=True)  # no record may describe a chunk being rewritten
    array[slice_index] = maps
    record = {"version": STORE_VERSION, "key": key, "checksum": features_checksum(maps)}
    write_atomic(record_path, json.dumps(record).encode("utf-8"))
