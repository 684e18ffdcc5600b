"""Freed CPU memory kept for reuse during long CPU work (glibc's allocator; elsewhere a no-op).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
gives it back with ``munmap`` on free. A 256 px training step allocates and frees dozens of
activations of 30-70 MB, so the kernel faults in and zero-fills each of them again on every
step: on one CPU thread that was about a quarter of the step's time (``benchmarks/bench_official.py``).
Inside :func:`reuse_freed_memory` glibc takes all memory from its heap and never trims it, so
the next step reuses the pages the last one freed; on leaving, the usual policy comes back and
the freed memory is returned to the system (``malloc_trim``).

Scope: the process-wide allocator policy changes only while a caller is inside (nested and
concurrent callers are counted). Threads other than the main one allocate from their own
arenas, where glibc still maps requests above 64 MiB one by one, so there the gain is smaller.
Users who set glibc's own ``MALLOC_MMAP_MAX_`` / ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` environment variables, or ``NADA_REUSE_CPU_MEMORY=0``, keep their policy.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from typing import Iterator

import torch

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
#: The policy restored on leaving: glibc's mmap limit, and the thresholds its dynamic rule reaches
#: after the first large block is freed (mmap 32 MiB, trim twice that), which a run of large
#: tensors has reached anyway.
_RESTORE = ((M_MMAP_MAX, 65536), (M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 64 << 20))
_USER_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc():
    """glibc's C library with ``mallopt`` and ``malloc_trim``, or None (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def applies(device: str | torch.device = "cpu") -> bool:
    """Whether :func:`reuse_freed_memory` changes anything for work on ``device`` here."""
    if torch.device(device).type != "cpu":
        return False
    if os.environ.get("NADA_REUSE_CPU_MEMORY", "1").strip() == "0" or any(v in os.environ for v in _USER_ENV):
        return False
    return _glibc() is not None


@contextlib.contextmanager
def reuse_freed_memory(device: str | torch.device = "cpu", enabled: bool = True) -> Iterator[bool]:
    """Keep freed memory in the process while inside (CPU work on glibc); yields whether it applies.

    Results are unchanged (only where memory comes from). The cost is memory: freed blocks wait
    for reuse instead of going back to the system, so the peak resident size grows by what the
    heap cannot fit into its holes (measured in README: +15-45% on a 256 px step), which is why
    memory-saving runs (``enabled=False``, the trainer's ``checkpointing``) keep the default policy.
    """
    global _depth
    libc = _glibc() if enabled and applies(device) else None
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_MAX, 0)  # every block from the heap: freed pages stay mapped
            libc.mallopt(M_TRIM_THRESHOLD, -1)  # and the heap never shrinks while inside
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for param, value in _RESTORE:
                    libc.mallopt(param, value)
                libc.malloc_trim(0)


__all__ = ["applies", "reuse_freed_memory"]
