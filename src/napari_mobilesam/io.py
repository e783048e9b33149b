"""Files in and out of the command-line tool: images, labels, prompt tables, resumable work.

- **input**: a TIFF (read with ``tifffile``; memory-mapped when uncompressed)
  or a zarr array (a path to the array, or to a group plus ``array=`` the
  array's path inside it; an OME-Zarr multiscale group gives its full
  resolution). Lazy arrays stay lazy: slices are read one at a time.
- **output**: labels as a TIFF (``.tif``/``.tiff``) or a zarr array
  (``.zarr``, one chunk per 2D slice). Outputs are written under a temporary
  name in the same folder and renamed into place only when complete, so an
  interrupted run never leaves a half-written output.
- **resume**: :class:`SliceStore`, the work folder ``<OUTPUT>.partial`` where
  finished slices wait, each with a "done" marker, until the output is written.

Prompt tables (napari's Points and Shapes CSV files) are read by
:mod:`napari_mobilesam.prompt_tables`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MobileSAMError

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIX = ".zarr"
PARTIAL_SUFFIX = ".partial"
_TMP_PREFIX = ".tmp-"


# -- input ---------------------------------------------------------------------


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
        from .stack import leading_shape

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
    from .stack import is_rgb, leading_shape

    rgb = is_rgb(data, rgb)
    leading_shape(data, rgb)  # raises for (Y, X) when told it is colour
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


# -- output --------------------------------------------------------------------


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
    if path.exists() and not overwrite:
        raise MobileSAMError(f"{path} already exists; pass --overwrite to replace it, or choose another name.")
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
    temporary = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        if kind == "tiff":
            _write_tiff(temporary, planes, shape, attributes)
        else:
            _write_zarr(temporary, planes, shape, attributes)
        _replace(temporary, path)
    except OSError as error:
        raise MobileSAMError(f"Could not write {path} ({error.strerror or error}).") from None
    finally:
        _remove(temporary)
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
    array = zarr.create_array(
        str(path), shape=shape, chunks=chunks, dtype="int32", fill_value=0, attributes=attributes or {}
    )
    for flat, plane in enumerate(_checked_planes(planes, shape)):
        array[np.unravel_index(flat, shape[:-2]) if len(shape) > 2 else ...] = plane


def _replace(temporary: Path, path: Path) -> None:
    """Move ``temporary`` to ``path``; an existing output is moved aside first and deleted after."""
    if path.exists() and (path.is_dir() or temporary.is_dir()):
        old = path.with_name(f"{_TMP_PREFIX}old-{uuid.uuid4().hex[:8]}-{path.name}")
        os.rename(path, old)
        try:
            os.rename(temporary, path)
        except OSError:
            os.rename(old, path)
            raise
        _remove(old)
    else:
        os.replace(temporary, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Labels written by :func:`write_labels` (TIFF or zarr) as a numpy array."""
    path = Path(path)
    if output_format(path) == "tiff":
        import tifffile

        return tifffile.imread(path)
    import zarr

    return zarr.open_array(str(path), mode="r")[...]


# -- resume --------------------------------------------------------------------


class SliceStore:
    """Finished slices of an unfinished run, kept in ``<OUTPUT>.partial`` until the output is written.

    A zarr v3 group: ``slices`` ``(n_slices, Y, X)`` int32 (one chunk per
    slice, each slice's own ids), a ``done/<slice_index>`` marker written
    after its chunk, and the run's ``fingerprint`` (input, weights,
    parameters) as an attribute. A store whose fingerprint differs from this
    run's is discarded, so a resumed run never mixes results of different settings.
    """

    FORMAT = "napari-mobilesam-partial"
    VERSION = 1

    def __init__(self, path: Path, array) -> None:
        self.path = path
        self._array = array

    @staticmethod
    def path_for(output: str | os.PathLike) -> Path:
        output = Path(output)
        return output.with_name(output.name + PARTIAL_SUFFIX)

    @classmethod
    def open(
        cls,
        output: str | os.PathLike,
        fingerprint: dict,
        n_slices: int,
        plane_shape: tuple[int, int],
        resume: bool = True,
    ) -> SliceStore:
        """The work store of ``output``: the existing one when it matches ``fingerprint``, else a new one."""
        import zarr

        path = cls.path_for(Path(output).absolute())
        fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back
        shape = (int(n_slices), *map(int, plane_shape))
        if path.exists():
            if resume:
                try:
                    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
                    meta = group.attrs.get(cls.FORMAT, {})
                    array = group["slices"]
                    if meta.get("version") == cls.VERSION and meta.get("fingerprint") == fingerprint:
                        if tuple(array.shape) == shape and (path / "done").is_dir():
                            return cls(path, array)
                except Exception:
                    pass  # unreadable: start again
            _remove(path)
        staging = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
        try:
            attributes = {cls.FORMAT: {"version": cls.VERSION, "fingerprint": fingerprint}}
            group = zarr.open_group(str(staging), mode="w", zarr_format=3, attributes=attributes)
            group.create_array("slices", shape=shape, chunks=(1, *shape[1:]), dtype="int32", fill_value=0)
            (staging / "done").mkdir()
            os.rename(staging, path)
        except OSError as error:
            raise MobileSAMError(f"Cannot create the work folder {path} ({error.strerror or error}).") from None
        finally:
            _remove(staging)
        return cls(path, zarr.open_group(str(path), mode="r+", zarr_format=3)["slices"])

    def done(self) -> set[int]:
        """Slice indices whose labels are stored."""
        done = set()
        for marker in (self.path / "done").iterdir():
            if marker.name.isdigit():
                done.add(int(marker.name))
        return done

    def write(self, slice_index: int, labels: np.ndarray) -> None:
        """Store one slice's labels, then mark it done (a crash in between only redoes the slice)."""
        self._array[int(slice_index)] = np.asarray(labels, dtype=np.int32)
        (self.path / "done" / str(int(slice_index))).touch()

    def read(self, slice_index: int) -> np.ndarray:
        return self._array[int(slice_index)]

    def remove(self) -> None:
        _remove(self.path)
