"""The package stays cheap to import: plugin discovery must not pull in torch or Qt."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return set(out.stdout.split())


def test_import_is_cheap():
    loaded = modules_after("import napari_mobilesam")
    heavy = {"torch", "PyQt6", "PyQt5", "PySide6", "qtpy", "napari", "magicgui", "skimage"}
    assert not heavy & loaded


def test_public_names_resolve_lazily():
    import napari_mobilesam

    for name in napari_mobilesam.__all__:
        assert getattr(napari_mobilesam, name) is not None
    with pytest.raises(AttributeError):
        napari_mobilesam.does_not_exist  # noqa: B018
