"""ONNX Runtime inference: one session per gunicorn worker, one intra-op thread, warmed up before it serves.

Why ONNX Runtime: on this project's 2-core machines it was the only runtime that reached the batched goal
(30.3k images/s for 64-image requests, LiteRT 22.7k) while staying under 100 MB per worker (FACTS.md,
bench/bench_service.py re-measures it). One thread per worker because gunicorn already runs one worker per core.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from contracts.artifact_speed import single_thread_options

# Images per inference call: a 64-image request is one run. Why not 32 (as before): each run streams the model's
# weights through the cache again, so two runs of 32 cost 2.5 % more CPU than one of 64 in a tight loop and more
# under gunicorn, where other work evicts the weights between runs (bench/profile_service.py, bench_service.py);
# one run of 64 holds ~10 MB more activations at peak (77 -> 87 MB in one process), within the 100 MB goal.
CHUNK = 64
_shared_arena_lock = threading.Lock()
_shared_arena_registered = False


def _share_one_arena(ort: Any) -> None:
    """Register one CPU arena in this process's ONNX Runtime environment; every session uses it
    (`session.use_env_allocators`) instead of growing an arena of its own.

    Why: during a swap (service/versions.py) two sessions live in a worker, and each one's private arena grew
    by the activations of its own runs (+5 MB for 1- and 64-image requests with the demo model), never handed
    back. One shared arena serves both: the new version's first runs reuse the blocks the old one's runs freed.
    Measured in one process (demo model, 6.5 MB float ONNX, 1- and 64-image runs, two swaps): peak 99 -> 92 MB,
    inference as fast on 1 and 64 images. bench_swap.py (single images only): peak 105 -> 104 MB, within noise:
    there the peak is the new session's build (~+16 MB transient over the serving version, +6.4 MB kept).
    Tried and not kept: kSameAsRequested growth, initializers outside the arena
    (use_device_allocator_for_initializers), basic graph optimization, malloc_trim right after the build: no
    lower peak; no prepacking (session.disable_prepacking): up to -6 MB but 15-30 % slower runs. Called in the
    process that builds sessions (a gunicorn worker, after the fork), once."""
    global _shared_arena_registered
    with _shared_arena_lock:
        if _shared_arena_registered:
            return
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))  # -1: ORT's defaults
        _shared_arena_registered = True


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
        options = single_thread_options(ort)
        # Memory per worker (the goal is <= 100 MB): keep the CPU arena (without it, malloc fragmentation cost
        # +50 MB peak with the demo model) but no per-shape memory patterns (-6 MB with mixed batch sizes), and
        # never more than CHUNK images per run (bounds activations for requests of up to MAX_INSTANCES images).
        options.enable_mem_pattern = False
        _share_one_arena(ort)
        options.add_session_config_entry("session.use_env_allocators", "1")
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
