"""The per-user cache folder (weights in ``weights/``, embeddings in ``embeddings/``), found without importing torch.

``NAPARI_MOBILESAM_CACHE`` when set, else the OS user cache folder
(``~/.cache/napari-mobilesam`` on Linux; what ``pooch.os_cache`` gives, through
platformdirs). Cheap to import: the widget shows this folder on the UI thread.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "NAPARI_MOBILESAM_CACHE"


def cache_dir() -> Path:
    """The napari-mobilesam cache folder (absolute; not created here)."""
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser().absolute()
    import platformdirs  # pooch's own choice of folder

    return Path(platformdirs.user_cache_dir("napari-mobilesam"))
