"""Which artifact MODEL_ARTIFACT=auto serves: int8 only where the export measured it at least MIN_SPEEDUP faster,
on the CPU model the service runs on; every other case serves the float model and says why."""

import pytest

from contracts.artifact_speed import (
    ASKED,
    FLOAT,
    FLOAT_FASTER,
    INT8,
    INT8_FASTER,
    MIN_SPEEDUP,
    NO_INT8,
    NOT_MEASURED,
    OTHER_CPU,
    SpeedRecord,
    auto_choice,
    choice_reason,
    cpu_model,
)

CPU = "AMD EPYC 9B14"


def _metadata(int8_speed: float | None, cpu: str = CPU, int8: bool = True) -> dict:
    quantization = {"passed": int8}
    if int8_speed is not None:
        quantization["speed"] = SpeedRecord(cpu, 1000.0, int8_speed).to_dict()
    return {"int8_artifact": "model.int8.onnx" if int8 else None, "quantization": quantization}


@pytest.mark.parametrize(
    "int8_speed, chosen",
    [(1000.0 * MIN_SPEEDUP, INT8), (1000.0 * MIN_SPEEDUP - 0.5, FLOAT), (960.0, FLOAT), (1500.0, INT8)],
)
def test_int8_is_chosen_only_at_min_speedup_or_more(int8_speed, chosen):
    record = SpeedRecord(CPU, 1000.0, int8_speed)
    assert record.chosen == chosen
    assert record.to_dict()["chosen"] == chosen and SpeedRecord.from_dict(record.to_dict()) == record


@pytest.mark.parametrize(
    "metadata, cpu, expected",
    [
        (_metadata(1300.0), CPU, (INT8, INT8_FASTER)),
        (_metadata(1010.0), CPU, (FLOAT, FLOAT_FASTER)),
        (_metadata(1300.0), "Intel Xeon", (FLOAT, OTHER_CPU)),
        (_metadata(None), CPU, (FLOAT, NOT_MEASURED)),
        (_metadata(1300.0, int8=False), CPU, (FLOAT, NO_INT8)),
        ({"int8_artifact": "model.int8.onnx", "quantization": {"speed": {"cpu": CPU}}}, CPU, (FLOAT, NOT_MEASURED)),
        ({"int8_artifact": "model.int8.onnx", "quantization": None}, CPU, (FLOAT, NOT_MEASURED)),
    ],
)
def test_auto_serves_int8_only_where_it_was_measured_faster_on_this_cpu(metadata, cpu, expected):
    assert auto_choice(metadata, cpu) == expected


def test_the_reason_for_an_explicit_preference():
    assert choice_reason("float", _metadata(1300.0), CPU) == ASKED
    assert choice_reason("int8", _metadata(900.0), CPU) == ASKED  # asked for: served even where slower
    assert choice_reason("int8", _metadata(None, int8=False), CPU) == NO_INT8
    assert choice_reason("auto", _metadata(1300.0), CPU) == INT8_FASTER


def test_this_machine_has_a_cpu_model_name():
    assert cpu_model() and cpu_model() == cpu_model()
