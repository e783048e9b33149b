"""A one-line progress bar on stderr for the long-running commands (``segment``, ``prompt``, ``embed``)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``segment [#######.......] 12/30 slices  1.4 slices/s  ETA 13 s`` on stderr, when it is a terminal."""

    def __init__(self, label: str, quiet: bool = False, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()
        self.first_done: int | None = None
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if self.first_done is None:
            self.first_done, self.started = done, time.perf_counter()  # resumed slices do not count for speed
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / total) if total else width
        elapsed = time.perf_counter() - self.started
        rate = (done - self.first_done) / elapsed if elapsed > 0 else 0.0
        speed = f"  {rate:.2f} slices/s" if rate else ""
        eta = f"  ETA {(total - done) / rate:.0f} s" if rate and done < total else ""
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} slices{speed}{eta}"
        self.stream.write("\r" + line.ljust(78))
        self.stream.flush()
        self.shown = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
