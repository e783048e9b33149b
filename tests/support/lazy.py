"""A lazy image that must never be read: it has a shape and a dtype, and reading any pixel fails the test."""

from __future__ import annotations

import numpy as np


class Unreadable:
    """Stands for a huge dask or zarr array (e.g. 20000 x 20000): code that reads it whole fails loudly."""

    def __init__(self, shape, dtype=np.uint16) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        raise AssertionError(f"a pixel of the {self.shape} image was read: [{index}]")

    def __array__(self, *args, **kwargs):
        raise AssertionError(f"the whole {self.shape} image was read")
