"""The int8 artifact: a real static quantization of a small exported model, and the gate that decides to keep it."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from trainer.models import quantize
from trainer.models.quantize import MAX_ACCURACY_LOSS, MIN_AGREEMENT, QuantizationCheck


def _check(agreement: float, loss: float) -> QuantizationCheck:
    return QuantizationCheck(images=10_000, agreement=agreement, float_accuracy=0.92, int8_accuracy=0.92 - loss)


@pytest.mark.parametrize(
    "agreement, loss, passed",
    [
        (MIN_AGREEMENT, 0.0, True),
        (MIN_AGREEMENT - 1e-4, 0.0, False),
        (1.0, MAX_ACCURACY_LOSS - 1e-9, True),
        (1.0, MAX_ACCURACY_LOSS + 1e-4, False),
        (1.0, -0.01, True),  # int8 more accurate than float: kept
    ],
)
def test_gate_boundaries(agreement, loss, passed):
    assert _check(agreement, loss).passed is passed


def test_check_counts_agreement_and_both_accuracies():
    labels = np.array([0, 1, 2, 3])
    float_p = np.eye(4)[[0, 1, 2, 0]]  # 3 of 4 right
    int8_p = np.eye(4)[[0, 1, 3, 0]]  # disagrees once, 2 of 4 right
    result = quantize.check(float_p, int8_p, labels)
    assert (result.agreement, result.float_accuracy, result.int8_accuracy) == (0.75, 0.75, 0.5)
    assert result.accuracy_loss == pytest.approx(0.25) and not result.passed


def test_calibration_never_takes_more_than_asked_and_is_fixed():
    images = np.arange(20 * 28 * 28, dtype=np.uint8).reshape(20, 28, 28)
    a, b = quantize.calibration_sample(images, count=5), quantize.calibration_sample(images, count=5)
    assert a.shape == (5, 28, 28) and a.dtype == np.float32 and np.array_equal(a, b)
    assert len(quantize.calibration_sample(images, count=100)) == 20


def test_quantized_model_is_int8_and_still_a_classifier(exported_onnx, tmp_path):
    onnx_path, x = exported_onnx
    out = quantize.quantize(onnx_path, x[:64], tmp_path / "model.int8.onnx")
    import onnx

    graph = onnx.load(str(out))
    assert any(node.op_type == "QuantizeLinear" for node in graph.graph.node)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {"pixels": x[:8]})[0]
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


@pytest.fixture(scope="module")
def exported_onnx(smoke_model, trainer_world, tmp_path_factory):
    """The session's smoke model exported to ONNX, and raw test pixels to feed it."""
    from trainer.data.dataset import load_dataset
    from trainer.models.export import export_onnx

    path = export_onnx(smoke_model[1].model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return path, load_dataset(trainer_world.settings).x_test.astype(np.float32)


def test_the_speed_record_keeps_the_measured_figures_and_this_cpu():
    """The export's choice from injected figures: deterministic, whatever this machine's load."""
    from contracts.artifact_speed import cpu_model

    seen = []

    def throughput(float_path, int8_path, images):
        seen.append((float_path.name, int8_path.name, len(images)))
        return 20_000.0, 26_000.0

    images = np.zeros((100, 28, 28), np.float32)
    record = quantize.compare_speed(Path("model.onnx"), Path("model.int8.onnx"), images, throughput=throughput)
    assert seen == [("model.onnx", "model.int8.onnx", 100)]
    assert record.to_dict() == {
        "cpu": cpu_model(),
        "batch": 64,
        "threads": 1,
        "float_images_per_s": 20_000.0,
        "int8_images_per_s": 26_000.0,
        "speedup": 1.3,
        "min_speedup": 1.05,
        "chosen": "int8",
    }
    slower = quantize.compare_speed(Path("a"), Path("b"), images, throughput=lambda *_: (20_000.0, 19_000.0))
    assert slower.chosen == "float"


def test_both_artifacts_are_really_timed(exported_onnx, tmp_path):
    onnx_path, x = exported_onnx
    int8_path = quantize.quantize(onnx_path, x[:64], tmp_path / "model.int8.onnx")
    float_speed, int8_speed = quantize.measure_throughput(onnx_path, int8_path, x[:64], rounds=3)
    assert 0 < float_speed < 1e9 and 0 < int8_speed < 1e9
