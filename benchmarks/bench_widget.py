"""Benchmark of the MobileSAM widget's interactive paths (not a test; prints a Markdown table).

Run under an X server, e.g.::

    xvfb-run -a python benchmarks/bench_widget.py            # recipe test weights (same speed as real ones)
    xvfb-run -a python benchmarks/bench_widget.py --real     # the official weights, if installed

Measured through the widget's own code:

- **point -> preview**: from adding a point to the prompt layer (what a click does)
  to the preview layer holding the new mask, with the slice's embedding cached,
  on a 512x512 slice; debounce, worker start, decoding and drawing included;
- **revisit (memory / disk)**: from scrolling back to an encoded slice to its
  embedding being ready, from the in-memory cache and from the disk cache (new session).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def recipe_model():
    """The recipe test weights, loaded as users load weights (engine settings included)."""

    from napari_mobilesam import load_model
    from recipe import save_recipe_weights

    with tempfile.TemporaryDirectory() as folder:
        return load_model(save_recipe_weights(folder), device="cpu")


_WAITING = []  # the event loops of wait_until calls in progress


def wake() -> None:
    """Called by the recording callbacks: end the wait at once instead of at the next check."""
    for loop in _WAITING:
        loop.quit()


def wait_until(app, condition, timeout=60.0):
    """Run Qt's event loop until ``condition()`` holds.

    The main thread sleeps in the event loop, as it does in napari while the
    user looks at the screen: the callbacks that record a step call
    :func:`wake`, and a timer checks every 25 ms only as a safety net. (Polling
    every millisecond, as this benchmark did before, woke the main thread a
    thousand times a second, each time taking the interpreter lock from the
    decoding worker.)
    """
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.perf_counter() + timeout

    def check():
        if condition() or time.perf_counter() > deadline:
            loop.quit()

    timer = QTimer()
    timer.setInterval(25)
    timer.timeout.connect(check)
    timer.start()
    _WAITING.append(loop)
    try:
        if not condition():
            loop.exec()
    finally:
        _WAITING.remove(loop)
        timer.stop()
    if not condition():
        raise TimeoutError("benchmark step timed out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--real", action="store_true", help="use load_model() (official weights) instead of test weights"
    )
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    import napari
    import numpy as np
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_mobilesam._qt import session as session_module
    from napari_mobilesam._sample_data import nuclei_2d
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache

    tmp = Path(tempfile.mkdtemp(prefix="bench-widget-"))
    model = None
    if args.real:
        from napari_mobilesam import load_model

        model = load_model()
    else:
        model = recipe_model()
    session = session_module.Session(cache=EmbeddingCache(directory=tmp / "embeddings"))
    session.set_model(model, source="benchmark")
    session_module._SESSION = session

    image = nuclei_2d()[0][0]
    stack = np.stack([image, image[::-1], image[:, ::-1]])  # three different 512x512 slices
    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    viewer.add_image(stack, name="nuclei")
    viewer.dims.set_current_step(0, 0)
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.prefetch = False
    widget.wait(120)
    assert widget._encoded is not None, widget.status

    # -- point -> preview ---------------------------------------------------------
    shown = []
    show_preview = widget._show_preview

    def record_preview(decoded):
        show_preview(decoded)
        if decoded is not None:
            shown.append(time.perf_counter())
            wake()

    widget._show_preview = record_preview
    preview_times = []
    rng = np.random.default_rng(0)
    for repeat in range(args.repeats + 3):
        if repeat % 3 == 0:
            widget.clear_prompts()
            widget.wait(10)
        shown.clear()
        y, x = rng.uniform(50, 460, size=2)
        start = time.perf_counter()
        widget.points_layer.add([[0, y, x]])  # what napari's add-point callback does on a click
        wait_until(app, lambda: bool(shown))
        widget.wait(10)
        if repeat >= 3:  # the first decodes warm torch up
            preview_times.append((shown[-1] - start) * 1000)

    # The same decode without the widget, for the share that is the engine's.
    from napari_mobilesam.interactive.decoding import decode_objects
    from napari_mobilesam.interactive.prompt_objects import objects_from_prompts

    predictor = session.predictor()
    predictor.set_embedding(widget._encoded.embedding)
    engine_times = []
    for _ in range(args.repeats):
        y, x = rng.uniform(50, 460, size=2)
        start = time.perf_counter()
        decode_objects(predictor, objects_from_prompts([[x, y]], [True], np.zeros((0, 4))))
        engine_times.append((time.perf_counter() - start) * 1000)

    # -- revisits -------------------------------------------------------------------
    events = {}
    on_start, on_ready = widget.encoder._on_start, widget.encoder._on_ready

    def record_start(plane):
        events["start"] = time.perf_counter()
        on_start(plane)

    def record_ready(result):
        events["ready"] = (time.perf_counter(), result.source)
        on_ready(result)
        wake()

    widget.encoder._on_start, widget.encoder._on_ready = record_start, record_ready
    viewer.dims.set_current_step(0, 1)
    widget.wait(120)  # computed

    def revisit(step):
        events.clear()
        start = time.perf_counter()
        viewer.dims.set_current_step(0, step)
        wait_until(app, lambda: "ready" in events)
        widget.wait(10)
        ready, source = events["ready"]
        return source, (ready - events["start"]) * 1000, (ready - start) * 1000

    memory, memory_scroll = [], []
    for repeat in range(12):
        source, worker_ms, scroll_ms = revisit(repeat % 2)  # z=0 and z=1 are both cached
        assert source == "memory", source
        memory.append(worker_ms)
        memory_scroll.append(scroll_ms)
    disk, disk_scroll = [], []
    for repeat in range(8):
        session.cache.clear(memory=True, disk=False)
        source, worker_ms, scroll_ms = revisit(repeat % 2)
        assert source == "disk", source
        disk.append(worker_ms)
        disk_scroll.append(scroll_ms)

    def row(name, values, target):
        return f"| {name} | {statistics.median(values):.1f} | {max(values):.1f} | {target} |"

    print(
        f"\nMobileSAM widget, 512x512 slice, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'official' if args.real else 'recipe test'} weights\n"
    )
    print("| path | median ms | max ms | target |")
    print("| --- | ---: | ---: | --- |")
    print(row("new point -> preview layer updated (embedding cached)", preview_times, "< 50 ms"))
    print(row("  of which decoding alone (decode_objects, no widget)", engine_times, "-"))
    print(row("revisit, embedding from memory (widget's encode path)", memory, "< 20 ms"))
    print(row("revisit, embedding from disk (widget's encode path)", disk, "< 100 ms"))
    print(row("revisit from memory, scroll to embedding ready (incl. napari redraw)", memory_scroll, "-"))
    print(row("revisit from disk, scroll to embedding ready (incl. napari redraw)", disk_scroll, "-"))
    viewer.close()


if __name__ == "__main__":
    main()
