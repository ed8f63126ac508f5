"""Which ONNX artifact a service serves by default: int8 only where the export measured it faster on that CPU.

Why measured, not assumed: static int8 runs the convolutions in integer arithmetic (VNNI where the CPU has it), and
whether that beats float depends on the CPU and the model: on the same AMD EPYC one champion's int8 file reached
0.96x the float throughput and another's 1.27x. So the export times both files (one single-thread ONNX Runtime
session each, SPEED_BATCH-image runs, as a service worker runs them) and records the figures, the CPU model and
its choice in metadata.json `quantization.speed`. A service left at MODEL_ARTIFACT=auto (the default) serves int8
when that record chose it and the service runs on the CPU model it was measured on; anywhere else the float
model, which is exact. /v1/model says which and why (`artifact_choice`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SPEED_BATCH = 64  # images per timed run: the batched request the throughput goals are about
MIN_SPEEDUP = 1.05  # int8 must be this much faster: below it timing noise decides, and float is exact
FLOAT, INT8 = "float", "int8"

# Why each artifact serves (the reason codes /v1/model shows)
ASKED = "asked"  # MODEL_ARTIFACT=float or int8 names it
NO_INT8 = "no_int8_artifact"  # not exported, or its accuracy gate refused it
NOT_MEASURED = "not_measured"  # an export from before the speed record
OTHER_CPU = "measured_on_another_cpu"
INT8_FASTER = "int8_faster_on_this_cpu"
FLOAT_FASTER = "int8_not_faster_on_this_cpu"


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """This machine's CPU model name (Linux /proc/cpuinfo), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class SpeedRecord:
    """Both artifacts' inference-only throughput at export, on one CPU, and the artifact chosen from them."""

    cpu: str
    float_images_per_s: float
    int8_images_per_s: float
    batch: int = SPEED_BATCH

    @property
    def speedup(self) -> float:
        return self.int8_images_per_s / self.float_images_per_s if self.float_images_per_s > 0 else 0.0

    @property
    def chosen(self) -> str:
        return INT8 if self.speedup >= MIN_SPEEDUP else FLOAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "batch": self.batch,
            "threads": 1,
            "float_images_per_s": round(self.float_images_per_s, 1),
            "int8_images_per_s": round(self.int8_images_per_s, 1),
            "speedup": round(self.speedup, 4),
            "min_speedup": MIN_SPEEDUP,
            "chosen": self.chosen,
        }

    @classmethod
    def from_dict(cls, block: object) -> SpeedRecord | None:
        """The record in metadata.json's `quantization.speed`; None when absent or malformed."""
        if not isinstance(block, Mapping):
            return None
        try:
            return cls(
                str(block["cpu"]),
                float(block["float_images_per_s"]),
                float(block["int8_images_per_s"]),
                int(block.get("batch", SPEED_BATCH)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def speed_record(metadata: Mapping[str, Any]) -> SpeedRecord | None:
    quantization = metadata.get("quantization")
    return SpeedRecord.from_dict(quantization.get("speed")) if isinstance(quantization, Mapping) else None


def auto_choice(metadata: Mapping[str, Any], cpu: str) -> tuple[str, str]:
    """(FLOAT or INT8, reason code) for MODEL_ARTIFACT=auto on a machine whose CPU model is `cpu`."""
    if not metadata.get("int8_artifact"):
        return FLOAT, NO_INT8
    record = speed_record(metadata)
    if record is None:
        return FLOAT, NOT_MEASURED
    if record.cpu != cpu:
        return FLOAT, OTHER_CPU
    return (INT8, INT8_FASTER) if record.chosen == INT8 else (FLOAT, FLOAT_FASTER)


def choice_reason(preference: str, metadata: Mapping[str, Any], cpu: str) -> str:
    """Why the artifact a service serves was chosen, for MODEL_ARTIFACT `preference` (auto, float or int8)."""
    if preference == "auto":
        return auto_choice(metadata, cpu)[1]
    if preference == INT8 and not metadata.get("int8_artifact"):
        return NO_INT8
    return ASKED


def single_thread_options(ort: Any) -> Any:
    """The ONNX Runtime session options of one service worker (one thread, sequential, every graph optimisation),
    given the `onnxruntime` module: the service builds its sessions from them and the export times the two
    artifacts with them, so the recorded choice is measured the way the service will run it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options
