"""MobileSAM for napari: segment microscopy images with Segment Anything, fast on a CPU.

Importing this package is cheap: torch and Qt load only when a public name
that needs them is first used.

Quick start::

    import napari_mobilesam as nms
    model = nms.load_model()                 # official weights, downloaded once
    predictor = nms.Predictor(model)
    predictor.set_image(image)               # (H, W) or (H, W, 3) array
    masks, scores, logits = predictor.predict(point_coords=[[120, 80]], point_labels=[1])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "MobileSAMError": "errors",
    "load_model": "engine.weights",
    "download_weights": "engine.weights",
    "Predictor": "engine.predictor",
    "ImageEmbedding": "engine.embedding",
    "EmbeddingCache": "cache.embedding_cache",
    "segment_everything": "segment.everything",
    "segment_stack": "segment.stack",
    "segment_from_prompts": "segment.stack_prompts",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_mobilesam' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    # ruff: noqa: F401
    from .engine.embedding import ImageEmbedding
    from .engine.predictor import Predictor
    from .engine.weights import download_weights, load_model
    from .errors import MobileSAMError
    from .segment.everything import segment_everything
    from .segment.stack import segment_stack
    from .segment.stack_prompts import segment_from_prompts
