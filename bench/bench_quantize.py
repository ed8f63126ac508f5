"""The int8 artifact against the float one, on one model and the real test set: speed, accuracy, agreement.

Prints figures, asserts nothing. Single-thread ONNX Runtime (how each service worker runs), 64 images per run,
the median of --repeat runs after a warm-up; float and int8 are timed alternately so load on a shared machine
hits both alike. Usage (after `make demo`):
    .venv/bin/python bench/bench_quantize.py [--model-dir DIR] [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from contracts.layout import INPUT_NAME, OUTPUT_NAME, ModelFiles
from settings import load_config
from trainer.data.dataset import load_dataset
from trainer.models import quantize
from trainer.models.model_dir import onnx_probabilities, onnx_session
from trainer.models.registry import CHAMPION, ModelRegistry


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model-dir", help="a model directory with model.onnx (default: the local champion)")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    settings = load_config("local")
    registry = ModelRegistry.from_settings(settings)
    model_dir = Path(args.model_dir or registry.version_uri(registry.resolve(CHAMPION)))
    data = load_dataset(settings)
    print(f"model {model_dir}; dataset {data.version}; load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    float_path = model_dir / ModelFiles.ONNX
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "model.int8.onnx"
        start = time.perf_counter()
        quantize.quantize(float_path, quantize.calibration_sample(data.x_train), int8_path)
        print(
            f"quantized in {time.perf_counter() - start:.1f} s; {float_path.stat().st_size:,} -> "
            f"{int8_path.stat().st_size:,} bytes"
        )
        result = quantize.check(
            onnx_probabilities(float_path, data.x_test), onnx_probabilities(int8_path, data.x_test), data.y_test
        )
        print(
            f"test accuracy float {result.float_accuracy:.4f}, int8 {result.int8_accuracy:.4f}; argmax agreement "
            f"{result.agreement:.2%} (gate: >= {quantize.MIN_AGREEMENT:.1%} and <= "
            f"{quantize.MAX_ACCURACY_LOSS * 100:.1f} points lost: {'passed' if result.passed else 'refused'})"
        )
        batch = data.x_test[:64].astype(np.float32)
        sessions = {"float": onnx_session(float_path, threads=1), "int8": onnx_session(int8_path, threads=1)}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for s in sessions.values():
            for _ in range(20):
                s.run([OUTPUT_NAME], {INPUT_NAME: batch})
        for _ in range(args.repeat):
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run([OUTPUT_NAME], {INPUT_NAME: batch})
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
        for name, ms in medians.items():
            print(f"{name:>5}: 64 images in {ms:.2f} ms on one thread = {64 / ms * 1000:,.0f} images/s per core")
        print(f"int8 speed-up: {medians['float'] / medians['int8']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
