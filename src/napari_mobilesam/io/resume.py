"""Resuming an interrupted run: :class:`SliceStore`, the work folder ``<OUTPUT>.partial``.

Finished slices wait there, each with a "done" marker, until every slice is
done and the output is written (by :mod:`napari_mobilesam.io.labels`);
a re-run with the same input, weights and parameters skips them. The run
working there holds its lock (:mod:`napari_mobilesam.io.work_lock`), so a
second run on the same output is refused instead of mixing its slices in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import MobileSAMError
from . import work_lock
from .files import remove_path, temporary_path, write_atomic

PARTIAL_SUFFIX = ".partial"


class SliceStore:
    """Finished slices of an unfinished run, kept in ``<OUTPUT>.partial`` until the output is written.

    A zarr v3 group: ``slices`` ``(n_slices, Y, X)`` int32 (one chunk per
    slice, each slice's own ids ``1..n``), a ``done/<slice_index>`` marker
    holding ``n``, written after its chunk, and the run's ``fingerprint`` (input, weights,
    parameters) as an attribute. A store whose fingerprint differs from this
    run's is discarded, so a resumed run never mixes results of different settings.
    """

    FORMAT = "napari-mobilesam-partial"
    VERSION = 2  # 2: each slice's own ids 1..n, the count in its done marker

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
        """The work store of ``output``, locked for this process: the existing one when it matches ``fingerprint``, else a new one.

        Raises :class:`MobileSAMError` when another run is working on ``output``
        (its lock names the process), before anything is changed.
        """
        import zarr

        path = cls.path_for(Path(output).absolute())
        fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back
        shape = (int(n_slices), *map(int, plane_shape))
        if path.exists() or path.is_symlink():
            if not cls.is_ours(path):
                raise MobileSAMError(
                    f"{path} exists but is not a work folder of napari-mobilesam, so it is left alone. Move or "
                    "delete it yourself, or choose another output name."
                )
            work_lock.take(path, output)  # refuses while another run works here; a killed run's lock is taken over
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
            remove_path(path)
        staging = temporary_path(path)
        try:
            attributes = {cls.FORMAT: {"version": cls.VERSION, "fingerprint": fingerprint}}
            group = zarr.open_group(str(staging), mode="w", zarr_format=3, attributes=attributes)
            group.create_array("slices", shape=shape, chunks=(1, *shape[1:]), dtype="int32", fill_value=0)
            (staging / "done").mkdir()
            work_lock.write_lock(staging)  # the folder appears with its lock in it
            os.rename(staging, path)
        except OSError as error:
            if path.is_dir():  # another run made it in the meantime
                raise work_lock.refusal(path, work_lock.read_owner(path / work_lock.LOCK_NAME), output) from None
            raise MobileSAMError(f"Cannot create the work folder {path} ({error.strerror or error}).") from None
        finally:
            remove_path(staging)
        return cls(path, zarr.open_group(str(path), mode="r+", zarr_format=3)["slices"])

    @classmethod
    def is_ours(cls, path: Path) -> bool:
        """Whether ``path`` is a work folder this class made (the only kind it ever deletes)."""
        try:
            meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return not path.is_symlink() and isinstance(meta.get("attributes", {}).get(cls.FORMAT), dict)

    def done(self) -> set[int]:
        """Slice indices whose labels are stored."""
        done = set()
        for marker in (self.path / "done").iterdir():
            if marker.name.isdigit():
                done.add(int(marker.name))
        return done

    def write(self, slice_index: int, labels: np.ndarray) -> None:
        """Store one slice's labels (its objects ``1..n``), then mark it done with ``n``.

        A crash in between only redoes the slice.
        """
        labels = np.asarray(labels, dtype=np.int32)
        self._array[int(slice_index)] = labels
        write_atomic(self.path / "done" / str(int(slice_index)), str(int(labels.max(initial=0))).encode())

    def read(self, slice_index: int) -> np.ndarray:
        return self._array[int(slice_index)]

    def counts(self) -> np.ndarray:
        """``(n_slices,)`` int64: the number of objects of each slice (0 for slices not done)."""
        counts = np.zeros(self._array.shape[0], dtype=np.int64)
        for slice_index in self.done():
            counts[slice_index] = int((self.path / "done" / str(slice_index)).read_text() or 0)
        return counts

    def release(self) -> None:
        """Leave the store for a later run to resume: give up the lock."""
        work_lock.release(self.path)

    def remove(self) -> None:
        remove_path(self.path)
