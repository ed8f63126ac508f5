"""The service's fixed malloc thresholds (service/heap.py): a freed model-sized buffer leaves the process's memory,
and a request-sized one freed at the heap's top stays, so the next request does not fault its pages in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from service.config import ServiceConfig
from service.heap import MMAP_THRESHOLD, TRIM_THRESHOLD

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)

# A 2 MiB block freed (glibc then raises its dynamic threshold to 2 MiB), then a 1.5 MiB block written and freed:
# how much of it stays resident, in kB.
_PROBE = """
import sys
from service.heap import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
big = b"\\1" * (2 << 20)
del big
before = rss()
block = b"\\1" * (3 << 19)
del block
print(rss() - before)
"""


def _kept_kb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout)


def test_a_freed_block_over_the_threshold_goes_back_to_the_os_only_with_the_fixed_threshold():
    kept_by_default = _kept_kb("default")
    kept_when_fixed = _kept_kb("fixed")
    assert kept_by_default >= 1024, f"glibc's dynamic threshold kept only {kept_by_default} kB (expected ~1.5 MiB)"
    assert kept_when_fixed < 256, f"{kept_when_fixed} kB of a freed 1.5 MiB block stayed resident"


def test_a_whole_request_batch_stays_below_the_threshold():
    largest = ServiceConfig.from_env({}).max_instances * 28 * 28 * 4  # the default MAX_INSTANCES, as float32
    assert largest < MMAP_THRESHOLD, "requests would map and unmap their batch every time: raise the threshold"


# A request's buffers freed and allocated again, 200 times: a 64-image float32 batch (200 kB) and two more of its
# size alive at once (drift's feature intermediates), then all freed. Minor page faults per cycle.
_CYCLES = """
import ctypes, resource, sys
from service.heap import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
else:  # the mmap threshold alone, as the service set it before: the trim threshold left at 128 KiB
    assert ctypes.CDLL(None).mallopt(-3, 1 << 20)
def cycle():
    blocks = [b"\\1" * 200_704 for _ in range(3)]
    del blocks
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    cycle()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 200)
"""


def _faults_per_cycle(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _CYCLES, mode], capture_output=True, text=True, check=True, timeout=60)
    return float(out.stdout)


def test_request_sized_buffers_freed_at_the_heap_top_are_not_given_back_and_faulted_in_again():
    trimmed = _faults_per_cycle("mmap-only")
    kept = _faults_per_cycle("fixed")
    assert trimmed >= 50, f"with a 128 KiB trim threshold the 600 kB were expected back to the OS: {trimmed} faults"
    assert kept < 5, f"{kept} page faults per request-sized cycle with the trim threshold fixed"


def test_the_trim_threshold_keeps_a_whole_request_batch_and_is_twice_the_mmap_threshold():
    largest = ServiceConfig.from_env({}).max_instances * 28 * 28 * 4
    assert TRIM_THRESHOLD == 2 * MMAP_THRESHOLD > 2 * largest
