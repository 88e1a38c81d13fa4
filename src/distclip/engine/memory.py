"""Keep freed memory in the process: large tensors are then reused instead of mapped and faulted in anew.

glibc serves allocations above its mmap threshold (at most 32 MB while it adapts) with fresh
``mmap`` pages and returns them on free, so every round that allocates the same big client stacks
pays the page faults again (the kernel zeroes each 4 kB page). The simulator allocates stacks of
N×d floats every step; profiles showed these faults taking about half of a round on small networks
(docs/performance.md). :func:`keep_freed_memory` raises the mmap and trim thresholds once per
process, the same effect as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the
environment: the process keeps its high-water mark of memory until it exits. It does nothing when
those variables are set, when ``DISTCLIP_KEEP_MEMORY=0``, or on a C library without ``mallopt``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
THRESHOLD = 2**31 - 1  # bytes (mallopt takes an int)

_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds (once); whether the setting is in effect."""
    global _done
    if _done:
        return True
    if os.environ.get("DISTCLIP_KEEP_MEMORY") == "0" or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    return _done
