"""Keep freed memory for reuse, so repeated encodes and clicks do not pay page faults.

Every encode and every click allocates tensors of a few to a few tens of MB.
glibc's malloc hands those to the kernel (mmap) and takes them back on free,
and the kernel zeroes each page again on first touch: measured here, that is
about a quarter of a click's time and 10-15 % of an encode. Raising malloc's mmap
threshold to 64 MiB and its trim threshold to 512 MiB keeps such blocks in
the heap for reuse; at most 512 MiB of freed memory stays with the process,
and arrays larger than 64 MiB are still returned to the system at once.

It also asks torch to back its tensors of 2 MB and more with transparent
huge pages (``THP_MEM_ALLOC_ENABLE=1``, torch's own switch; Linux's default
"madvise" mode honours it): a click streams some 40 MB of image-side
tensors, and with 2 MB pages it measured ~0.6 ms faster (~17.2 vs ~17.9 ms,
medians of alternating fresh processes outside this machine's slow phases,
which hit both alike). torch reads that switch at its first CPU
allocation, so it takes effect only if no tensor existed before the engine
started; an explicit ``THP_MEM_ALLOC_ENABLE`` in the environment is left as is.

Applied once, when :func:`napari_mobilesam.load_model` starts the engine
(glibc/Linux only; elsewhere nothing happens). Set
``NAPARI_MOBILESAM_MALLOC_TUNING=0`` to leave malloc and torch's allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "NAPARI_MOBILESAM_MALLOC_TUNING"
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 512 << 20
HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"  # read by torch's CPU allocator (c10/core/alloc_cpu.cpp)
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc malloc as described in the module doc; True if it is in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off") or not sys.platform.startswith("linux"):
        return _applied
    os.environ.setdefault(HUGE_PAGES_ENV, "1")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return _applied
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # Both must be set: setting either one also freezes glibc's dynamic thresholds.
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
