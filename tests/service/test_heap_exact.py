"""service/heap.py in-process: the threshold really reaches glibc's malloc (mallinfo2 counts the mmapped blocks),
and a C library without mallopt is a no-op that says so. tests/service/test_heap.py measures the resident memory
in child processes; these run in the test process, where mutation testing can attribute them."""

from __future__ import annotations

import ctypes
import platform

import pytest

from service import heap
from service.heap import MMAP_THRESHOLD, fix_mmap_threshold

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _mmapped_blocks_while_holding(size: int) -> int:
    """How many more blocks glibc serves by mmap while one malloc(size) is held."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    assert block, f"malloc({size}) failed"
    try:
        return int(libc.mallinfo2().hblks - before)
    finally:
        libc.free(block)


@pytest.fixture
def threshold_restored():
    yield
    assert fix_mmap_threshold() is True  # the service's value: the rest of this process keeps a fixed 1 MiB


def test_the_service_threshold_is_one_mib():
    assert MMAP_THRESHOLD == 1 << 20  # the measured one (module docstring): a request's batch stays below it


def test_the_threshold_is_set_in_glibc_and_reported(threshold_restored):
    # a 128 MiB block comes from the heap only under a threshold set above it: glibc's own dynamic threshold never
    # exceeds 32 MiB (64-bit), so unset it maps the block. Below the threshold first: once a block has come from
    # the heap, its freed pages stay there under the trim threshold set with it (twice the mmap threshold), and
    # malloc serves the next one from them whatever the mmap threshold says
    assert fix_mmap_threshold(64 << 20) is True
    assert _mmapped_blocks_while_holding(128 << 20) == 1
    assert fix_mmap_threshold(256 << 20) is True
    assert _mmapped_blocks_while_holding(128 << 20) == 0


class _NoMallopt:
    """A C library without mallopt (musl's namespace, say)."""


def test_a_c_library_without_mallopt_is_a_no_op_that_reads_false(monkeypatch):
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: _NoMallopt())
    assert fix_mmap_threshold() is False


def test_a_process_without_a_loadable_c_library_reads_false(monkeypatch):
    def refuse(name):
        raise OSError("no C library to load")

    monkeypatch.setattr(heap.ctypes, "CDLL", refuse)
    assert fix_mmap_threshold() is False


class _RecordedLibc:
    """glibc's mallopt as the module calls it, answering `answers` in turn (1 = accepted, 0 = refused)."""

    def __init__(self, *answers: int) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answers = list(answers)

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answers.pop(0)


@pytest.mark.parametrize(
    ("answers", "reported", "calls"),
    [
        ((1, 1), True, [(-3, 1 << 20), (-1, 2 << 20)]),  # M_MMAP_THRESHOLD, then M_TRIM_THRESHOLD at twice it
        ((1, 0), False, [(-3, 1 << 20), (-1, 2 << 20)]),
        ((0, 1), False, [(-3, 1 << 20)]),  # a refused mmap threshold sets nothing more
    ],
)
def test_both_thresholds_are_set_in_order_and_a_refusal_reads_false(monkeypatch, answers, reported, calls):
    # the real effect of the trim threshold (no page faults per request) is measured in children by
    # tests/service/test_heap.py; here the exact calls, in the test process where mutation testing sees them
    libc = _RecordedLibc(*answers)
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: libc)
    assert fix_mmap_threshold() is reported
    assert libc.calls == calls
