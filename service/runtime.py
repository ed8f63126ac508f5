"""ONNX Runtime inference: one session per gunicorn worker, one intra-op thread, warmed up before it serves.

Why ONNX Runtime: on this project's 2-core machines it was the only runtime that reached the batched goal
(30.3k images/s for 64-image requests, LiteRT 22.7k) while staying under 100 MB per worker (FACTS.md,
bench/bench_service.py re-measures it). One thread per worker because gunicorn already runs one worker per core.
"""

from __future__ import annotations

import numpy as np

CHUNK = 32  # images per inference call: bounds activation memory; 64-image requests ran as fast in two calls


class ModelRuntimeError(Exception):
    """The serving artifact cannot be loaded or does not behave like a Fashion-MNIST classifier."""


class OnnxClassifier:
    """Raw pixels float32 [N,28,28] in 0..255 -> probabilities float32 [N,10].

    `model` is a file path or the ONNX bytes themselves (what the service passes after checking their digest)."""

    def __init__(self, model: str | bytes, input_name: str, n_classes: int = 10):
        # Imported on first use: under gunicorn the master has imported it already (gunicorn_conf.when_ready),
        # and the workers leave through gunicorn_conf.worker_exit because of what that import implies.
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        # onnxruntime's own error types derive from Exception directly: name the ones a bad model file raises.
        load_errors = (
            ort_errors.Fail,
            ort_errors.InvalidArgument,
            ort_errors.InvalidGraph,
            ort_errors.InvalidProtobuf,
            ort_errors.NoSuchFile,
            ort_errors.NotImplemented,
            ort_errors.RuntimeException,
            OSError,
            ValueError,
        )
        self.runtime_version = f"onnxruntime {ort.__version__}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Memory per worker (the goal is <= 100 MB): keep the CPU arena (without it, malloc fragmentation cost
        # +50 MB peak with the demo model) but no per-shape memory patterns (-6 MB with mixed batch sizes), and
        # never more than CHUNK images per run (-10 MB for 64-image requests, same speed).
        options.enable_mem_pattern = False
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except load_errors as exc:
            raise ModelRuntimeError(f"ONNX Runtime cannot load the model: {exc}") from None
        inputs = {i.name: i for i in self._session.get_inputs()}
        if input_name not in inputs:
            raise ModelRuntimeError(
                f"the model has no input named {input_name!r} (it has {sorted(inputs)}); "
                "metadata.json input.name must match the exported graph"
            )
        self._input_name = input_name
        self._n_classes = n_classes

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) <= CHUNK:
            probabilities: np.ndarray = self._session.run(None, {self._input_name: pixels})[0]
            return probabilities
        return np.concatenate(
            [
                self._session.run(None, {self._input_name: pixels[i : i + CHUNK]})[0]
                for i in range(0, len(pixels), CHUNK)
            ]
        )

    def warm_up(self) -> None:
        """One prediction on a blank and a bright image: proves the graph runs and returns probabilities."""
        probe = np.zeros((2, 28, 28), np.float32)
        probe[1] = 255
        out = np.asarray(self.predict(probe))
        if out.shape != (2, self._n_classes) or not np.all(np.isfinite(out)):
            raise ModelRuntimeError(
                f"warm-up: expected finite output of shape [2, {self._n_classes}], got {list(out.shape)}"
            )
        if not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            raise ModelRuntimeError(
                "warm-up: the model's output rows do not sum to 1; the serving artifact must "
                "end in softmax (docs/CONTRACTS.md)"
            )
