"""The examples in the public API's docstrings and in docs/console.md run, with the recipe model.

Every name the package exports (except the exception) must show an example:
a doctest (``>>>``) or a literal block after ``Example::``/``Examples::``.
They run in one namespace that stands in for a user's session: ``image``
(128x160 uint16), ``zyx_stack`` (2x64x64), ``model``, a ``viewer`` whose
``layers["nuclei"]`` and ``layers["points"]`` hold those arrays, and
``load_model()``/``download_weights()`` that return the recipe model (with a
stand-in instance decoder for micro-sam's models) and a file instead of downloading. To stay quick on a CPU, prompt grids are capped
at 4x4 points; what an example computes is otherwise left as it is.
"""

from __future__ import annotations

import doctest
import inspect
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import napari_mobilesam

ROOT = Path(__file__).resolve().parents[1]
EXEMPT = {"__version__", "MobileSAMError"}
# Modules of this package whose doctests run too (beyond the exported names).
DOCTEST_MODULES = ["napari_mobilesam.io.images", "napari_mobilesam.io.labels"]


def literal_examples(doc: str) -> list[str]:
    """Code of each ``Example::`` (or ``Examples::``, ``Quick start::``) literal block in ``doc``."""
    blocks = []
    lines = doc.expandtabs().splitlines()
    for number, line in enumerate(lines):
        if not re.match(r"\s*(Examples?|Quick start)::\s*$", line):
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        blocks.append(textwrap.dedent("\n".join(block)).strip())
    return [block for block in blocks if block]


def has_doctest(doc: str) -> bool:
    return bool(doctest.DocTestParser().get_examples(doc))


def exported() -> list[str]:
    return sorted(name for name in napari_mobilesam.__all__ if name not in EXEMPT)


class Layer:
    def __init__(self, data, **kwargs):
        self.data = data
        ndim = kwargs.pop("ndim", np.ndim(data))  # a Points layer's ndim is its number of columns
        self.scale = kwargs.pop("scale", (1.0,) * ndim)
        self.translate = (0.0,) * ndim
        self.contrast_limits = kwargs.pop("contrast_limits", None)
        self.features = kwargs.pop("features", {})
        self.name = kwargs.pop("name", "layer")

    def data_to_world(self, position):
        return np.asarray(position, dtype=float) * self.scale + self.translate

    def world_to_data(self, position):
        return (np.asarray(position, dtype=float) - self.translate) / self.scale


class Viewer:
    """What the examples use of napari's viewer: layers by name, and add_* methods that record."""

    def __init__(self, layers):
        self.layers = layers
        self.added = []

    def add_labels(self, data, **kwargs):
        self.added.append(("labels", np.asarray(data), kwargs))
        layer = Layer(data, **kwargs)
        self.layers[layer.name] = layer
        return layer

    def add_image(self, data, **kwargs):
        self.added.append(("image", np.asarray(data), kwargs))
        return Layer(data, **kwargs)


@pytest.fixture
def session(recipe_model, tmp_path, monkeypatch, request):
    """The namespace examples run in, with downloads and full-size prompt grids replaced."""
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.engine import weights
    from napari_mobilesam.engine.session import Session, set_default_session
    from napari_mobilesam.segment import params

    weights_file = tmp_path / "mobile_sam.pt"
    weights_file.write_bytes(b"stand-in")

    def fake_load_model(checkpoint=None, device=None, *, model=None, decoder=None):
        from napari_mobilesam.engine.model_registry import MODELS
        from support.instance_stand_in import StandInDecoder, with_decoder

        if model is not None and MODELS[model].has_decoder:  # micro-sam's models: the cheap stand-in decoder
            return with_decoder(recipe_model, StandInDecoder(), model_name=model)
        return recipe_model

    def fake_download_weights(url=None, sha256=None, cache_dir=None):
        return weights_file

    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(tmp_path / "cache"))
    for module in (weights, napari_mobilesam):
        monkeypatch.setattr(module, "load_model", fake_load_model, raising=False)
        monkeypatch.setattr(module, "download_weights", fake_download_weights, raising=False)
    previous = set_default_session(Session(recipe_model, EmbeddingCache(directory=None)))
    request.addfinalizer(lambda: set_default_session(previous))
    original = params.EverythingParams.from_kwargs.__func__

    def capped(cls, **settings):
        settings["points_per_side"] = min(int(settings.get("points_per_side", 32)), 4)
        return original(cls, **settings)

    monkeypatch.setattr(params.EverythingParams, "from_kwargs", classmethod(capped))

    rng = np.random.default_rng(0)
    image = rng.normal(300, 30, (128, 160)).clip(0).astype(np.uint16)
    image[40:90, 60:130] += 2000
    zyx_stack = rng.normal(300, 30, (2, 64, 64)).clip(0).astype(np.uint16)
    zyx_stack[:, 20:40, 20:44] += 2000
    nuclei = Layer(zyx_stack, scale=(2.0, 1.0, 1.0), contrast_limits=(250.0, 2400.0), name="nuclei")
    points = Layer(np.array([[0.0, 30.0, 30.0], [1.0, 30.0, 32.0]]), name="points", ndim=3)
    namespace = {name: getattr(napari_mobilesam, name) for name in napari_mobilesam.__all__}
    namespace.update(
        np=np,
        nms=napari_mobilesam,
        napari_mobilesam=napari_mobilesam,
        load_model=fake_load_model,
        download_weights=fake_download_weights,
        model=recipe_model,
        image=image,
        stack=zyx_stack,
        zyx_stack=zyx_stack,
        viewer=Viewer({"nuclei": nuclei, "points": points}),
        image_layer=nuclei,
        points_layer=points,
        tmp=tmp_path,
    )
    return namespace


@pytest.mark.parametrize("name", exported())
def test_exported_name_has_an_example(name):
    doc = inspect.getdoc(getattr(napari_mobilesam, name)) or ""
    assert doc, f"{name} has no docstring"
    assert literal_examples(doc) or has_doctest(doc), f"{name}'s docstring shows no example (Example:: or >>>)"


@pytest.mark.parametrize("name", ["__init__", *exported()])
def test_examples_run(name, session):
    target = napari_mobilesam if name == "__init__" else getattr(napari_mobilesam, name)
    doc = inspect.getdoc(target) or ""
    if has_doctest(doc):
        run_doctests(target, name, session)
    for block in literal_examples(doc):
        exec(compile(block, f"<example of {name}>", "exec"), session)


@pytest.mark.parametrize("module", DOCTEST_MODULES)
def test_module_doctests(module, session):
    import importlib

    run_doctests(importlib.import_module(module), module, session)


def run_doctests(target, name: str, namespace: dict) -> None:
    finder = doctest.DocTestFinder(recurse=inspect.ismodule(target))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    module = inspect.getmodule(target)
    for test in finder.find(target, name, module=module, globs={**vars(module), **namespace}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) of {name} failed (see the output above)"


def test_api_reference_lists_every_export():
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in exported() if f"`{name}" not in text]
    assert not missing, f"docs/api.md does not describe {missing}"


def console_blocks() -> list[tuple[str, str]]:
    """``(title, code)`` of the python blocks in docs/console.md that are marked to run in tests."""
    text = (ROOT / "docs" / "console.md").read_text()
    return [
        (match.group(1), match.group(2))
        for match in re.finditer(r"<!-- test: (\S+) -->\s*```python\n(.*?)```", text, re.S)
    ]


def test_console_doc_has_tested_blocks():
    titles = [title for title, _ in console_blocks()]
    assert "api" in titles


@pytest.mark.parametrize(("title", "code"), console_blocks())
def test_console_examples_run(title, code, session):
    exec(compile(code, f"<docs/console.md: {title}>", "exec"), session)
    assert session["viewer"].added, "the example adds no layer to the viewer"
