"""An int8 serving artifact: ONNX Runtime static quantization of the exported float model, kept only if it agrees.

Why static QDQ, per channel: the model is convolutions, which dynamic quantization leaves in float (it made this
model 3x slower); static quantization with a few hundred calibrated training images runs the convolutions in int8
(VNNI on this CPU). Why a gate: a quantized model that disagrees with the float one would serve predictions the
registry's metrics do not describe, so it is written only when it agrees with the float model on at least
`MIN_AGREEMENT` of the test images and loses at most `MAX_ACCURACY_LOSS` of test accuracy.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.artifact_speed import SPEED_BATCH, SpeedRecord, cpu_model, single_thread_options
from contracts.layout import INPUT_NAME
from trainer.models.model_dir import onnx_probabilities

MIN_AGREEMENT = 0.995
MAX_ACCURACY_LOSS = 0.002
CALIBRATION_IMAGES = 512
CALIBRATION_BATCH = 64
SPEED_ROUNDS = 25  # timed runs per artifact, alternating float and int8 so the machine's drift falls on both


@dataclass
class QuantizationCheck:
    images: int
    agreement: float  # share of test images where the int8 and float argmax agree
    float_accuracy: float
    int8_accuracy: float

    @property
    def accuracy_loss(self) -> float:
        return self.float_accuracy - self.int8_accuracy

    @property
    def passed(self) -> bool:
        return self.agreement >= MIN_AGREEMENT and self.accuracy_loss <= MAX_ACCURACY_LOSS

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "agreement": self.agreement,
            "float_accuracy": self.float_accuracy,
            "int8_accuracy": self.int8_accuracy,
            "accuracy_loss": self.accuracy_loss,
            "min_agreement": MIN_AGREEMENT,
            "max_accuracy_loss": MAX_ACCURACY_LOSS,
            "passed": self.passed,
        }


def calibration_sample(images: np.ndarray, count: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """A fixed random subset of the training images (never the test set: it judges the result)."""
    picked = np.random.default_rng(seed).permutation(len(images))[: min(count, len(images))]
    return np.asarray(images[np.sort(picked)], dtype=np.float32)


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over an array of raw-pixel images."""

    def __init__(self, images: np.ndarray):
        self._iterator: Iterator[dict[str, np.ndarray]] = (
            {INPUT_NAME: images[i : i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)


def quantize(float_path: Path, calibration: np.ndarray, out_path: Path) -> Path:
    """Write the int8 QDQ model for `float_path` to `out_path`, calibrated on `calibration` (raw pixels)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # symbolic shape inference needs sympy, which the project does not otherwise use; ONNX's own inference suffices
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        import onnx

        # the softmax stays float: quantized, its probabilities would come in steps of 1/255 and not sum to 1
        softmax = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Softmax"]
        quantize_static(
            str(prepared),
            str(out_path),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=softmax,
        )
    return out_path


def quantize_and_check(
    float_path: Path,
    out_path: Path,
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    float_probabilities: np.ndarray,
) -> QuantizationCheck:
    """Quantize on a calibration sample of the training images, then judge on the test set."""
    quantize(float_path, calibration_sample(x_train), out_path)
    return check(float_probabilities, onnx_probabilities(out_path, x_test, threads=1), y_test)


def check(float_probabilities: np.ndarray, int8_probabilities: np.ndarray, labels: np.ndarray) -> QuantizationCheck:
    float_pred, int8_pred = float_probabilities.argmax(axis=1), int8_probabilities.argmax(axis=1)
    return QuantizationCheck(
        images=len(labels),
        agreement=float(np.mean(float_pred == int8_pred)),
        float_accuracy=float(np.mean(float_pred == labels)),
        int8_accuracy=float(np.mean(int8_pred == labels)),
    )


def _session(path: Path) -> Any:
    """One single-thread session, built as a service worker builds it (service/runtime.py)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), single_thread_options(ort), providers=["CPUExecutionProvider"])


def measure_throughput(
    float_path: Path, int8_path: Path, images: np.ndarray, rounds: int = SPEED_ROUNDS
) -> tuple[float, float]:
    """(float, int8) inference-only images/s on this CPU: SPEED_BATCH-image runs on one thread, alternating the
    two sessions run by run, median CPU time of `rounds` runs each (CPU time: other work on the machine slows
    both alike instead of whichever happened to run then)."""
    batch = np.ascontiguousarray(images[:SPEED_BATCH], dtype=np.float32)
    sessions = [_session(float_path), _session(int8_path)]
    times: list[list[float]] = [[], []]
    for session in sessions:
        for _ in range(3):  # first runs allocate and pack weights
            session.run(None, {INPUT_NAME: batch})
    for _ in range(rounds):
        for session, spent in zip(sessions, times, strict=True):
            started = time.process_time()
            session.run(None, {INPUT_NAME: batch})
            spent.append(time.process_time() - started)
    float_s, int8_s = (float(np.median(spent)) for spent in times)
    return len(batch) / max(float_s, 1e-9), len(batch) / max(int8_s, 1e-9)


Throughput = Callable[[Path, Path, np.ndarray], tuple[float, float]]


def compare_speed(
    float_path: Path, int8_path: Path, images: np.ndarray, throughput: Throughput = measure_throughput
) -> SpeedRecord:
    """Both artifacts timed on this CPU (`throughput` is injectable: tests decide the figures)."""
    float_speed, int8_speed = throughput(float_path, int8_path, images)
    return SpeedRecord(cpu_model(), float_speed, int8_speed, min(SPEED_BATCH, len(images)))
