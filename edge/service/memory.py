"""Keep the daemon's memory flat: frame-sized buffers go straight back to the OS.

glibc's malloc raises its mmap threshold after the first large block is
freed, so later frame-sized arrays (a 640x480 frame is 0.9 MB, a float32 copy
3.7 MB) come from the heap, which fragments and never shrinks: the demo's
peak grew by 30 MB over 130 frames that way. Pinning the threshold at 128 kB
keeps every such buffer an mmap of its own, unmapped when numpy frees it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold; False (and nothing changed) on another C library."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no glibc mallopt: memory tuning skipped")
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))
