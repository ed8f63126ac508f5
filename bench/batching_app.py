"""A bare single-image app whose gunicorn gthread worker scores concurrent requests in one ONNX Runtime call.

    BATCH_MODEL=model.onnx BATCH_WAIT_MS=1 gunicorn -k gthread --threads 16 -w 2 bench.batching_app:app

The dynamic-batching prototype bench/bench_batching.py measures (issue 26, "beyond the anchor"): request threads
put their pixels on the worker's queue and wait; one batcher thread takes the first, gathers whatever else arrives
within BATCH_WAIT_MS (0: only what is already queued) up to BATCH_MAX_IMAGES, runs the session once and hands
each request its rows. BATCH_WAIT_MS=off runs each request's own session call in its thread (gthread without
batching: what the threads alone change). Reply: the anchor's /predict_raw JSON (`predictions`, `classes`).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
_session = ort.InferenceSession(os.environ["BATCH_MODEL"], _options, providers=["CPUExecutionProvider"])
_input = _session.get_inputs()[0].name
_WAIT = os.environ.get("BATCH_WAIT_MS", "1")
_MAX_IMAGES = int(os.environ.get("BATCH_MAX_IMAGES", "64"))


def _infer(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(_session.run(None, {_input: pixels})[0])


class Batcher:
    """One per worker: a queue of (pixels, reply slot) and the thread that scores them in batches."""

    def __init__(self, wait_s: float, max_images: int):
        self.wait_s, self.max_images = wait_s, max_images
        self.queue: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self.batches = self.requests = 0
        threading.Thread(target=self._run, name="batcher", daemon=True).start()

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        item: list[Any] = [pixels, None, threading.Event()]
        self.queue.put(item)
        item[2].wait()
        if isinstance(item[1], BaseException):
            raise item[1]
        return item[1]  # type: ignore[no-any-return]

    def _gather(self, first: list[Any]) -> list[list[Any]]:
        batch, images = [first], len(first[0])
        deadline = time.perf_counter() + self.wait_s
        while images < self.max_images:
            try:
                if self.wait_s <= 0:
                    item = self.queue.get_nowait()
                else:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    item = self.queue.get(timeout=remaining)
            except queue.Empty:
                break
            batch.append(item)
            images += len(item[0])
        return batch

    def _run(self) -> None:
        while True:
            batch = self._gather(self.queue.get())
            try:
                pixels = batch[0][0] if len(batch) == 1 else np.concatenate([item[0] for item in batch])
                out = _infer(pixels)
                start = 0
                for item in batch:
                    item[1] = out[start : start + len(item[0])]
                    start += len(item[0])
            except Exception as error:  # noqa: BLE001 - every waiting request gets the failure
                for item in batch:
                    item[1] = error
            self.batches += 1
            self.requests += len(batch)
            for item in batch:
                item[2].set()


_infer(np.zeros((1, 28, 28), np.float32))  # warm-up in the worker (no preload: this module loads after the fork)
_batcher = None if _WAIT == "off" else Batcher(float(_WAIT) / 1000, _MAX_IMAGES)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/stats":  # batches and requests scored by this worker's batcher
        stats = {"pid": os.getpid(), "batches": _batcher.batches if _batcher else 0}
        stats["requests"] = _batcher.requests if _batcher else 0
        body = orjson.dumps(stats)
    else:
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        pixels = np.frombuffer(data, np.uint8).reshape(-1, 28, 28).astype(np.float32)
        probabilities = _batcher.predict(pixels) if _batcher is not None else _infer(pixels)
        body = orjson.dumps({"predictions": probabilities.tolist(), "classes": probabilities.argmax(1).tolist()})
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
