"""Loading torch's native library without holding Python's lock, so a GUI's thread never waits for it.

``import torch`` maps ``libtorch_cpu`` (some 400 MB) into the process. Python
holds its global interpreter lock through the loading of an extension module,
so while a worker thread imports torch the UI thread cannot run for as long
as that takes (0.2-0.5 s measured on a 2-core machine: napari freezes). A call
through ctypes releases the lock: :func:`preload_torch_library` asks the
system's dynamic loader for the library that way first, and the import then
finds it loaded. Linux with glibc only (elsewhere, or when torch is already
imported or not found, nothing happens); the library is loaded as torch loads
it (local symbols), so nothing else changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import sys
from pathlib import Path

LIBRARY = "libtorch_cpu.so"


def preload_torch_library() -> bool:
    """Load torch's main native library with Python's lock released; True if it was loaded here."""
    if "torch" in sys.modules or not sys.platform.startswith("linux"):
        return False
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / LIBRARY
    if not path.is_file():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        dlopen = libc.dlopen  # a foreign call: ctypes releases the lock around it
    except (OSError, AttributeError):
        return False
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = (ctypes.c_char_p, ctypes.c_int)
    return bool(dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL))
