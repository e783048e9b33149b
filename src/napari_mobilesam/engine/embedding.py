"""The image embedding: the expensive part of SAM, computed once per image."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MobileSAMError

EMBEDDING_SHAPE = (256, 64, 64)


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """What the image encoder computed for one 2D image.

    Attributes:
        features: ``(256, 64, 64)`` float32 image embedding.
        original_size: ``(height, width)`` of the image given to ``set_image``, in pixels.
        input_size: ``(height, width)`` of the resized image inside the 1024x1024 model input.

    Plain data: :meth:`save` writes an ``.npz`` file that :meth:`load` reads
    back without pickle.

    Example::

        embedding = Predictor(model).embed(image)  # features (256, 64, 64)
        embedding.save(tmp / "slice.npz")
        assert ImageEmbedding.load(tmp / "slice.npz").original_size == image.shape[:2]
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    def __post_init__(self) -> None:
        features = np.asarray(self.features)
        if features.ndim == 4 and features.shape[0] == 1:
            features = features[0]
        if features.shape != EMBEDDING_SHAPE:
            raise MobileSAMError(
                f"An image embedding must have shape {EMBEDDING_SHAPE}, got {features.shape}; "
                "it does not come from MobileSAM's image encoder."
            )
        object.__setattr__(self, "features", np.ascontiguousarray(features, dtype=np.float32))
        object.__setattr__(self, "original_size", _size_pair(self.original_size, "original_size"))
        object.__setattr__(self, "input_size", _size_pair(self.input_size, "input_size"))
        if max(self.input_size) > 1024:
            raise MobileSAMError(f"input_size {self.input_size} exceeds the 1024 px model input.")

    @property
    def nbytes(self) -> int:
        return self.features.nbytes

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (``.npz``, uncompressed); returns the path written."""
        path = Path(path)
        with open(path, "wb") as f:
            np.savez(
                f,
                features=self.features,
                original_size=np.asarray(self.original_size, dtype=np.int64),
                input_size=np.asarray(self.input_size, dtype=np.int64),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageEmbedding:
        """Read an embedding written by :meth:`save` (no pickle is ever loaded)."""
        if not Path(path).is_file():
            what = "is a folder, not an embedding file" if Path(path).is_dir() else "does not exist"
            raise MobileSAMError(f"{path} {what}; give the path of an .npz written by ImageEmbedding.save.")
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["features"], tuple(data["original_size"]), tuple(data["input_size"]))
        except MobileSAMError:
            raise
        except Exception as exc:
            raise MobileSAMError(
                f"Cannot read an image embedding from {path}: {exc}. Delete it and encode again."
            ) from exc


def _size_pair(value, name: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise MobileSAMError(f"{name} must be (height, width), got {value!r}.") from None
    if height < 1 or width < 1:
        raise MobileSAMError(f"{name} must be positive, got {(height, width)}.")
    return height, width
