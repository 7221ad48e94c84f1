"""Heap settings for a link process (`cvqkd link`, and the tx/rx ends if they call it).

The link frees and reallocates arrays of 10-30 MB per frame (captures, DSP outputs, MDR
messages) on several worker threads. glibc's malloc gives each thread its own arena and, once
such an array has been freed, raises its mmap threshold (up to 32 MB), so later arrays of that
size come from the arenas, where freed space is kept per arena instead of returned. With one
arena for all threads the process reuses its freed space: at the 25 km defaults the peak
resident set dropped from 0.87-1.06 GB to ~0.83 GB with no measurable CPU cost (measured
2026-11-26, docs/performance.md "End-to-end link"). Fixing the mmap threshold lower as well
saves a little more but costs several seconds of page faults per 10^7-symbol block.

Elsewhere (musl, macOS, Windows) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_ARENA_MAX = -8  # glibc <malloc.h>


def single_malloc_arena() -> bool:
    """Ask glibc for one malloc arena shared by all threads; True if it was applied. Call it
    early, before worker threads allocate."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, 1))
