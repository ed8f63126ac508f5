"""A fixed malloc mmap threshold for the service's processes: a model swap's big transient buffers go back to the OS.

Why: glibc serves allocations of at least M_MMAP_THRESHOLD bytes with their own mmap and unmaps them on free, but
by default it raises that threshold to the size of each such block freed (up to 32 MiB), so after the first
session build the model-sized buffers of later builds come from the heap, where freed memory stays resident, and
a swap's peak holds them beside both versions. With the threshold fixed at 1 MiB they are mapped and
unmapped again: bench/bench_swap.py --signed, peak RSS per worker 101 -> 91 MB (load 19-25, the champion, 20
flips). A request's own buffers stay below it (a 256-image float32 batch is 0.8 MB), so the hot path never maps:
server CPU per 1- and 64-image request unchanged within the noise. Setting it (mallopt or MALLOC_MMAP_THRESHOLD_)
also turns the dynamic raise off. Called in gunicorn's master before the fork; glibc only, a no-op elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes

MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes for this process and the workers it forks; False where
    this C library has no mallopt (not glibc) or refuses the value."""
    with contextlib.suppress(AttributeError, OSError):
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, threshold))
    return False
