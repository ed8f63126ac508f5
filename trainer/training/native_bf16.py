"""Whether this CPU computes bfloat16 in hardware: the demo preset trains in mixed bf16 only where it does.

Why: with AVX512-BF16 or AMX, oneDNN runs the convolutions and matrix products of a bf16 step in hardware, and the
demo model's training epoch at batch 256 costs about 0.7x float32's (README, "Training levers", seventh session). A
CPU without them (most laptops, every ARM build of TensorFlow here) would emulate bf16 and lose time, so there the
preset stays float32. Read from /proc/cpuinfo's first "flags" line; no such file (macOS, Windows): float32.
"""

from __future__ import annotations

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (x86 names them on its `flags` line)."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def computes_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo_path, "rb") as file:
            text = file.read().decode(errors="replace")  # a vendor string in another encoding must not stop import
    except OSError:
        return False
    return bool(cpu_flags(text) & NATIVE_BF16_FLAGS)
