"""The package stays cheap to import: plugin discovery must not pull in torch or Qt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def core_modules() -> list[str]:
    """Every module of the package outside ``_qt``, found on disk."""
    import napari_mobilesam

    root = Path(napari_mobilesam.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] == "_qt" or parts[-1] == "__main__":
            continue
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        names.append(".".join(("napari_mobilesam", *parts)))
    return names


def test_the_core_never_imports_qt_or_napari():
    """Each module outside ``_qt``, imported alone in a fresh interpreter, brings in no Qt binding and no napari."""
    modules = core_modules()
    assert "napari_mobilesam.engine.predictor" in modules and len(modules) > 40
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(name)\n"
        "    gui = {m.split('.')[0] for m in set(sys.modules) - before} & "
        "{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'superqt', 'vispy'}\n"
        "    if gui:\n"
        "        print(name, sorted(gui))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout == "", out.stdout


def test_layout_stays_small():
    """A few modules at the top and no module much over 400 lines."""
    import napari_mobilesam

    root = Path(napari_mobilesam.__file__).parent
    assert len(list(root.glob("*.py"))) <= 12
    for path in root.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 420, path


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at the top or inside functions), read from the source."""
    import ast

    import napari_mobilesam

    root = Path(napari_mobilesam.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module) if p)
                found |= {t for t in (target, *(f"{target}.{a.name}" for a in node.names)) if t in modules}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
        # A package's __init__ (lazy names of the public API) is not a dependency of its modules.
        graph[name] = {t for t in found if t != name and not name.startswith(t + ".")}
    return graph


def test_no_import_cycles():
    graph = import_graph()
    assert "napari_mobilesam.segment.linking" in graph["napari_mobilesam.segment.stack"]
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1  # on the current path
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(target) :], target]))
            if target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
