"""Writing the labels: a TIFF (``.tif``/``.tiff``) or a zarr array (``.zarr``, one chunk per 2D slice).

Outputs are built under a temporary name (``.tmp-...``) in the same folder
and renamed into place only when complete, so an interrupted run never leaves
a half-written output, and an existing output it replaces stays whole until
then. :func:`check_output` runs before any work starts, so a wrong name or
folder fails at once rather than after hours of segmentation.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import MobileSAMError
from .files import TMP_PREFIX, remove_path, temporary_path
from .images import TIFF_SUFFIXES, ZARR_SUFFIX


def output_format(path: str | os.PathLike) -> str:
    """``"tiff"`` or ``"zarr"``, from the file name."""
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix == ZARR_SUFFIX:
        return "zarr"
    raise MobileSAMError(f"Cannot write labels to {path}: name the output .tif, .tiff or .zarr.")


def check_output(path: str | os.PathLike, overwrite: bool = False, input_path: str | os.PathLike | None = None) -> Path:
    """The absolute output path, after checking it can be written (before any work starts)."""
    path = Path(path).expanduser().absolute()
    output_format(path)
    if input_path is not None and path == Path(input_path).expanduser().absolute():
        raise MobileSAMError(f"The output {path} is the input; choose another name for the labels.")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise MobileSAMError(f"{path} already exists; pass --overwrite to replace it, or choose another name.")
    check_replaceable(path)
    if not path.parent.is_dir():
        raise MobileSAMError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    if not os.access(path.parent, os.W_OK):
        raise MobileSAMError(f"Cannot write {path}: no permission to write in {path.parent}.")
    return path


def write_labels(
    path: str | os.PathLike,
    planes: Iterable[np.ndarray],
    shape: tuple[int, ...],
    *,
    overwrite: bool = False,
    attributes: dict | None = None,
) -> Path:
    """Write ``int32`` labels of ``shape`` from its 2D ``planes`` in C order; atomically.

    The file (TIFF) or folder (zarr, one chunk per plane) is built under a
    temporary name next to ``path`` and renamed into place only once every
    plane is written; on any error or interruption the temporary is deleted
    and ``path`` is untouched.

    Example:

    >>> planes = [np.full((4, 4), z, np.int32) for z in range(3)]
    >>> write_labels(tmp / "labels.zarr", planes, (3, 4, 4)).name
    'labels.zarr'
    """
    path = check_output(path, overwrite=overwrite)
    kind = output_format(path)
    temporary = temporary_path(path)
    try:
        if kind == "tiff":
            _write_tiff(temporary, planes, shape, attributes)
        else:
            _write_zarr(temporary, planes, shape, attributes)
        _replace(temporary, path)
    except OSError as error:
        raise MobileSAMError(f"Could not write {path} ({error.strerror or error}).") from None
    finally:
        remove_path(temporary)
    return path


def _checked_planes(planes: Iterable[np.ndarray], shape: tuple[int, ...]):
    count = int(np.prod(shape[:-2], dtype=np.int64))
    written = 0
    for plane in planes:
        plane = np.asarray(plane)
        if plane.shape != tuple(shape[-2:]):
            raise ValueError(f"plane of shape {plane.shape} does not fit labels of shape {shape}")
        written += 1
        yield plane.astype(np.int32, copy=False)
    if written != count:
        raise ValueError(f"{written} planes for labels of shape {shape} ({count} expected)")


def _write_tiff(path: Path, planes, shape, attributes) -> None:
    import tifffile

    metadata = {"axes": "YX" if len(shape) == 2 else "Q" * (len(shape) - 3) + "ZYX"}
    if attributes:
        metadata["napari_mobilesam"] = json.dumps(attributes)
    size = int(np.prod(shape, dtype=np.int64)) * 4
    tifffile.imwrite(
        path,
        _checked_planes(planes, shape),
        shape=shape,
        dtype=np.int32,
        photometric="minisblack",
        compression="zlib",
        bigtiff=size > 2**31,
        metadata=metadata,
    )


def _write_zarr(path: Path, planes, shape, attributes) -> None:
    import zarr

    chunks = (1,) * (len(shape) - 2) + tuple(shape[-2:])
    # Always our attribute: it is what lets a later --overwrite recognise the array as ours.
    attributes = {LABELS_ATTRIBUTE: {}, **(attributes or {})}
    array = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype="int32", fill_value=0, attributes=attributes)
    for flat, plane in enumerate(_checked_planes(planes, shape)):
        array[np.unravel_index(flat, shape[:-2]) if len(shape) > 2 else ...] = plane


def _replace(temporary: Path, path: Path) -> None:
    """Move ``temporary`` to ``path``; an existing output is moved aside first and deleted after.

    What is there is checked again (:func:`check_replaceable`): it may have changed during a long run.
    """
    check_replaceable(path)
    if path.exists() and (path.is_dir() or temporary.is_dir()):
        old = path.with_name(f"{TMP_PREFIX}old-{uuid.uuid4().hex[:8]}-{path.name}")
        os.rename(path, old)
        try:
            os.rename(temporary, path)
        except OSError:
            os.rename(old, path)
            raise
        remove_path(old)
    else:
        os.replace(temporary, path)


# -- what --overwrite may replace --------------------------------------------------

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
LABELS_ATTRIBUTE = "napari_mobilesam"  # every labels zarr we write carries it


def check_replaceable(path: Path) -> None:
    """Raise unless ``path`` is missing or is an output this tool could have written.

    ``--overwrite`` replaces only a TIFF file (by its content, not its name) or
    a zarr array carrying our ``napari_mobilesam`` attribute and nothing but
    zarr's own files; a folder of anything else, a link or a non-TIFF file is
    refused, so a typo in ``-o`` can never delete a user's data.
    """
    if not (path.exists() or path.is_symlink()):
        return
    refuse = (
        f"--overwrite replaces only a labels file written by napari-mobilesam. Move or delete {path} yourself, "
        "or choose another output name."
    )
    if path.is_symlink():
        raise MobileSAMError(f"{path} is a link. {refuse}")
    kind = output_format(path)
    if kind == "tiff":
        if not path.is_file():
            raise MobileSAMError(f"{path} is a folder, not a TIFF file. {refuse}")
        with open(path, "rb") as file:
            head = file.read(4)
        if head not in _TIFF_MAGIC:
            raise MobileSAMError(f"{path} is not a TIFF file (its content is something else). {refuse}")
        return
    if not path.is_dir():
        raise MobileSAMError(f"{path} is a file, not a zarr array. {refuse}")
    reason = _foreign_zarr(path)
    if reason:
        raise MobileSAMError(f"{path} {reason}. {refuse}")


def _foreign_zarr(path: Path) -> str | None:
    """Why the folder ``path`` is not a labels zarr array of ours, or None when it is."""
    others = sorted(entry.name for entry in path.iterdir() if entry.name not in ("zarr.json", "c"))
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        return f"holds files that napari-mobilesam does not write ({', '.join(others[:3])}{more})"
    try:
        meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "is not a zarr array (no readable zarr.json)"
    if meta.get("node_type") != "array" or not isinstance(meta.get("attributes", {}).get(LABELS_ATTRIBUTE), dict):
        return "is not a labels array written by napari-mobilesam"
    return None


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Labels written by :func:`write_labels` (TIFF or zarr) as a numpy array."""
    path = Path(path)
    if output_format(path) == "tiff":
        import tifffile

        return tifffile.imread(path)
    import zarr

    return zarr.open_array(str(path), mode="r")[...]
