"""Keep freed memory in the process: glibc's ``malloc`` otherwise hands every large freed block
back to the kernel and takes it again on the next step, one page fault per 4 KiB page.

A training step frees and re-allocates the same activations every step. With glibc's defaults
(blocks above 128 KiB come from ``mmap``; free memory at the heap's top is trimmed above
128 KiB) each step pays hundreds of minor page faults. ``pyrogen``'s commands raise both
thresholds (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``) at start-up, as
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` would (measured in
``benchmarks/README.md``: ``pyrogen vae --data digits --epochs 10``, ~0.7× the CPU time). The
cost: memory freed by the process stays mapped (its peak resident size does not grow).

Only the command line does this (a library must not change its host's allocator); a user's own
script can call :func:`keep_freed_memory` or set the two environment variables.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # bytes: blocks up to 1 GiB come from the heap, and it is not trimmed
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB; ``True`` if done.

    Does nothing (``False``) off Linux, without glibc, or when the user set either
    ``MALLOC_*_THRESHOLD_`` variable (their choice wins)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: its C library's
    except (OSError, AttributeError):  # no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
