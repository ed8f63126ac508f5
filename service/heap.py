"""Fixed malloc thresholds for the service's processes: a model swap's big transient buffers go back to the OS, and a
request's buffers stay on the heap.

Why: glibc serves allocations of at least M_MMAP_THRESHOLD bytes with their own mmap and unmaps them on free, but
by default it raises that threshold to the size of each such block freed (up to 32 MiB), so after the first
session build the model-sized buffers of later builds come from the heap, where freed memory stays resident, and
a swap's peak holds them beside both versions. With the threshold fixed at 1 MiB they are mapped and
unmapped again: bench/bench_swap.py --signed, peak RSS per worker 101 -> 91 MB (load 19-25, the champion, 20
flips). A request's own buffers stay below it (a 256-image float32 batch is 0.8 MB), so the hot path never maps.
Setting it (mallopt or MALLOC_MMAP_THRESHOLD_) also turns the dynamic raise off, and with it the raise of
M_TRIM_THRESHOLD that goes with it (twice the mmap threshold): left at its 128 KiB default, every free at the
heap's top of more than that gave the pages back (brk) and the next request faulted them in again, zeroed by the
kernel: a 64-image batch's float32 copy (200 kB) cost 45.6 us instead of 5.9, drift's features of 64 sampled
images 555 us instead of 225 (process time, load 20). So the trim threshold is fixed too, at twice the mmap
threshold, as glibc's own dynamic rule would set it: at most 2 MiB of freed heap stays resident per process.
Called in gunicorn's master before the fork; glibc only, a no-op elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes

MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes, and its trim threshold at twice that, for this process and
    the workers it forks; False where this C library has no mallopt (not glibc) or refuses a value."""
    with contextlib.suppress(AttributeError, OSError):
        mallopt = ctypes.CDLL(None).mallopt
        return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
    return False
