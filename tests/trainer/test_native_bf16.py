"""The demo preset's precision follows the CPU: mixed bf16 where the hardware computes bf16, float32 elsewhere."""

from __future__ import annotations

from trainer.training.native_bf16 import NATIVE_BF16_FLAGS, computes_bf16, cpu_flags
from trainer.training.train import PRESETS

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16 fma
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu
"""
LAPTOP = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-8565U\nflags\t\t: fpu avx avx2 fma avx512_bf16x\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: avx512f amx_bf16 amx_tile amx_int8\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n"


def test_the_first_processors_flags_are_read_exactly():
    assert cpu_flags(EPYC) == frozenset({"fpu", "vme", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma"})
    assert cpu_flags(ARM) == frozenset()  # ARM says "Features": TensorFlow's ARM build is not asked for bf16
    assert cpu_flags("") == frozenset()
    # a line is split at its first colon: a value may hold colons of its own
    assert cpu_flags("flags\t\t: fpu avx512_bf16 a:b\n") == frozenset({"fpu", "avx512_bf16", "a:b"})


def test_bf16_is_native_with_avx512_bf16_or_amx_only(tmp_path):
    assert {"avx512_bf16", "amx_bf16"} == NATIVE_BF16_FLAGS
    for text, native in ((EPYC, True), (SAPPHIRE_RAPIDS, True), (LAPTOP, False), (ARM, False)):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        assert computes_bf16(str(path)) is native, text


def test_no_cpuinfo_file_means_float32(tmp_path):
    assert computes_bf16(str(tmp_path / "missing")) is False


def test_the_demo_preset_trains_in_bf16_exactly_where_this_cpu_computes_it():
    assert PRESETS["demo"].mixed_precision is computes_bf16()
    assert PRESETS["full"].mixed_precision is True and PRESETS["smoke"].mixed_precision is False


def test_a_cpuinfo_with_bytes_that_are_not_utf8_is_still_read(tmp_path):
    """A vendor string in another encoding must not crash the preset's import (it is read at import time)."""
    path = tmp_path / "cpuinfo"
    path.write_bytes(b"processor\t: 0\nmodel name\t: Fa\xefl\xff CPU\nflags\t\t: fpu avx512_bf16\n")
    assert computes_bf16(str(path)) is True
