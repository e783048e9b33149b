"""Files written whole or not at all: temporary names beside the target, atomic replacement, removal.

Everything the package writes (labels, work folders, cache records) is built
under a ``.tmp-`` name in the target's folder and renamed into place, so an
interrupted run never leaves a half-written file under a real name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

TMP_PREFIX = ".tmp-"


def temporary_path(path: Path) -> Path:
    """A fresh name next to ``path`` to build it under (``.tmp-<random>-<name>``) before renaming it into place."""
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file: readers see the old content or the new, never half."""
    temporary = temporary_path(path)
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_path(path: Path) -> None:
    """Delete a file or folder if it is there (a link is removed, not followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
