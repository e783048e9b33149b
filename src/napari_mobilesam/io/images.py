"""Opening the image the command-line tool segments: a TIFF file or a zarr array, read lazily.

A TIFF is read with ``tifffile`` (memory-mapped when uncompressed); a zarr
array is given by its path, or by a group's path plus ``array=`` the array's
path inside it (an OME-Zarr multiscale group gives its full resolution). Lazy
arrays stay lazy: slices are read one at a time. :class:`InputImage` also
carries the names the rest of the tool keys on: the embedding cache's
``image_id`` (the same one the widget gives a layer opened from the file) and
the ``fingerprint`` a resumed run must match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MobileSAMError

# File names the tool reads images from and writes labels to (see label_files.output_format).
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIX = ".zarr"


@dataclass(frozen=True)
class InputImage:
    """An image or stack opened for segmentation.

    Attributes:
        data: ``(..., Y, X)`` or ``(..., Y, X, 3|4)`` array (numpy, memory map or zarr), read lazily.
        rgb: whether the last axis is colour.
        image_id: a stable name for the embedding cache (the absolute path, plus the array inside a group).
        fingerprint: what identifies the pixels for resuming (path, size, modification time, shape, dtype).
    """

    data: object
    rgb: bool
    image_id: str
    fingerprint: dict

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.leading_shape, dtype=np.int64))

    @property
    def leading_shape(self) -> tuple[int, ...]:
        from ..segment.stack import leading_shape

        return leading_shape(self.data, self.rgb)

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """The shape of the labels: the input's without a colour axis."""
        shape = tuple(int(s) for s in self.data.shape)
        return shape[:-1] if self.rgb else shape


def read_image(path: str | os.PathLike, array: str | None = None, rgb: bool | None = None) -> InputImage:
    """Open a TIFF file or a zarr array for segmentation (pixels are read later, slice by slice).

    ``array`` is the path of the array inside a zarr group (e.g. ``"raw"`` or
    ``"0"``). ``rgb`` says whether a last axis of 3 or 4 is colour (default:
    napari's guess).

    Raises :class:`~napari_mobilesam.MobileSAMError` when the path does not
    exist, the file cannot be read, or the array is not a 2D image or a stack
    of them.

    Example:

    >>> import numpy as np, tifffile
    >>> tifffile.imwrite(tmp / "stack.tif", np.zeros((3, 64, 64), np.uint16))
    >>> image = read_image(tmp / "stack.tif")
    >>> image.data.shape, image.n_slices, image.rgb
    ((3, 64, 64), 3, False)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise MobileSAMError(f"{path} does not exist. Check the path (and the current folder, {Path.cwd()}).")
    if array is not None and path.is_file() and path.suffix.lower() in TIFF_SUFFIXES:
        raise MobileSAMError(
            f"{path} is a TIFF file; the array name {array!r} (--array) picks an array inside a zarr group. "
            "Leave it out for a TIFF."
        )
    is_zarr = path.is_dir() or path.suffix.lower() == ZARR_SUFFIX or array is not None
    if is_zarr:
        data, inner = _open_zarr(path, array)
        source = f"{path.absolute()}::{inner}" if inner else str(path.absolute())
        stat = _zarr_stat(path / inner if inner else path)
    elif path.suffix.lower() in TIFF_SUFFIXES:
        data = _open_tiff(path)
        source = str(path.absolute())
        stat = path.stat()
        stat = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    else:
        raise MobileSAMError(f"Cannot read {path}: expected a TIFF file (.tif, .tiff) or a zarr array (.zarr folder).")
    _check_image_array(data, path)
    from ..segment.stack import is_rgb, plane_shape

    rgb = is_rgb(data, rgb)
    plane_shape(data, rgb)  # raises for (Y, X) told to be colour, and for planes too large to segment
    image_id = file_image_id(source, data.shape, data.dtype, rgb)
    fingerprint = {"image_id": image_id, **stat, "shape": list(map(int, data.shape)), "dtype": str(data.dtype)}
    return InputImage(data, rgb, image_id, fingerprint)


def file_image_id(source: str, shape, dtype, rgb: bool) -> str:
    """The embedding-cache name of a file's stack of ``(Y, X)`` planes.

    The widget names a layer opened from a file the same way (path, shape,
    dtype, displayed axes, multiscale level), so embeddings precomputed here
    serve its clicks too, when the contrast limits are the same.
    """
    spatial = len(shape) - (1 if rgb else 0)
    displayed = (spatial - 2, spatial - 1)
    return f"{source}|{tuple(int(s) for s in shape)}|{np.dtype(dtype).str}|axes{displayed}|level0"


def _open_tiff(path: Path):
    import logging

    import tifffile

    # tifffile logs what it finds wrong in a file; the one error raised below says it instead.
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        try:
            data = tifffile.memmap(path, mode="r")  # no copy for uncompressed files, however large
        except Exception:
            data = tifffile.imread(path)  # compressed or tiled: read it all
        if data.size == 0:
            raise ValueError("it holds no image data")
        return data
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MobileSAMError(
            f"Cannot read {path} as a TIFF image ({reason}). Check that the file is complete and is a TIFF."
        ) from None
    finally:
        logger.setLevel(level)


def _open_zarr(path: Path, array: str | None):
    """``(array, path inside the store)``; a group resolves to its only array or its full-resolution level."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as error:
        raise MobileSAMError(f"Cannot open {path} as a zarr array or group ({error}).") from None
    inner = ""
    if array:
        if not isinstance(node, zarr.Group):
            raise MobileSAMError(f"{path} is a zarr array, not a group: leave out the array name {array!r}.")
        try:
            node = node[array]
        except KeyError:
            raise MobileSAMError(
                f"{path} has no array {array!r}. Arrays in it: {', '.join(_array_names(node)) or 'none'}."
            ) from None
        inner = array.strip("/")
    if isinstance(node, zarr.Group):
        names = _array_names(node)
        multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
        if multiscales:
            level = multiscales[0]["datasets"][0]["path"]
        elif len(names) == 1:
            level = names[0]
        else:
            listed = ", ".join(names[:10]) or "none"
            raise MobileSAMError(
                f"{path / inner if inner else path} is a zarr group with {len(names)} arrays ({listed}); "
                "name the one to segment with --array NAME (or give its path)."
            )
        node = node[level]
        inner = f"{inner}/{level}" if inner else level
    return node, inner


def _array_names(group) -> list[str]:
    import zarr

    names = []
    for name, member in group.members(max_depth=None):
        if isinstance(member, zarr.Array):
            names.append(name)
    return sorted(names)


def _zarr_stat(path: Path) -> dict:
    """Size and newest modification time of the array's files: changes when pixels are rewritten."""
    size, newest = 0, 0
    for file in path.rglob("*") if path.is_dir() else [path]:
        try:
            if file.is_file():
                stat = file.stat()
                size += stat.st_size
                newest = max(newest, stat.st_mtime_ns)
        except OSError:
            pass
    return {"size": size, "mtime_ns": newest}


def _check_image_array(data, path: Path) -> None:
    shape = tuple(getattr(data, "shape", ()))
    dtype = np.dtype(getattr(data, "dtype", object))
    if len(shape) < 2:
        raise MobileSAMError(
            f"{path} holds a {len(shape)}D array of shape {shape}; expected a 2D image (Y, X) or a stack (..., Y, X)."
        )
    if 0 in shape:
        raise MobileSAMError(f"{path} holds an empty array of shape {shape}.")
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b") or np.issubdtype(dtype, np.complexfloating):
        raise MobileSAMError(f"{path} holds {dtype} values; expected numbers (integers, floats or booleans).")
