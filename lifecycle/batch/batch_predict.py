"""`python -m lifecycle batch-predict SOURCE`: score a set of images with the champion, in-process and batched.

SOURCE is a directory of PNGs, a gs:// prefix of PNGs, or an IDX image file (gzipped or raw). Scoring runs the
service's own code: `service.model_bundle.load_bundle` finds the model (a registry reference such as
`<models bucket>@champion`, or a version directory), `service.images.decode_image_instance` decodes each PNG as
the service decodes a {"b64": ...} instance, and `service.runtime.OnnxClassifier` (one ONNX Runtime thread) runs
it; decoding and inference both happen in the workers, one process per core. Why here: the trainer may not import
the service, the lifecycle may import both. Predictions (image id, class, probabilities, model version) go to
JSONL or Parquet, local or gs://. With `--vertex` the same source is scored by a Vertex AI batch prediction job on
the serving image instead (trainer.cloud.batch_prediction builds that request, through trainer.api).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import storage
from settings import ConfigError, load_config

CHUNK = 512  # images per task sent to a worker: large enough that pickling is noise, small enough to balance
_classifier = None  # the worker process's OnnxClassifier


class BatchInputError(ValueError):
    """The source cannot be read as images; the message names it and what is accepted."""


@dataclass
class ImageSet:
    """Images with stable ids: decoded pixels (IDX) or the encoded PNG files, which the workers decode."""

    ids: list[str]
    pixels: np.ndarray | None = None  # uint8 [N, 28, 28]
    encoded: list[bytes] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def decoded(self) -> np.ndarray:
        """The pixels, decoding PNGs here (in this process) when the set holds files."""
        if self.pixels is None:
            self.pixels = decode_pngs(self.encoded or [], 0)
        return self.pixels


# ---- reading the source -----------------------------------------------------------------------------------------


def _decode_png(data: bytes, index: int) -> np.ndarray:
    from service.errors import RequestError
    from service.images import decode_image_instance

    try:
        pixels, _notes = decode_image_instance(base64.b64encode(data).decode("ascii"), index)
    except RequestError as exc:
        raise BatchInputError(f"image {index}: {exc}") from None
    return np.asarray(pixels, dtype=np.uint8)


def read_idx_images(data: bytes, name: str) -> ImageSet:
    from trainer.api import IdxError, decode_idx_images

    try:
        images = decode_idx_images(data, name)
    except IdxError as exc:
        raise BatchInputError(str(exc)) from None
    stem = Path(name).name
    return ImageSet([f"{stem}:{i:05d}" for i in range(len(images))], pixels=np.ascontiguousarray(images))


def decode_pngs(blobs: list[bytes], offset: int) -> np.ndarray:
    """uint8 [N, 28, 28] from PNG files, as the service decodes {"b64": ...} instances; `offset` numbers errors."""
    pixels = np.empty((len(blobs), 28, 28), np.uint8)
    for i, data in enumerate(blobs):
        pixels[i] = _decode_png(data, offset + i)
    return pixels


def read_png_files(named: list[tuple[str, bytes]]) -> ImageSet:
    return ImageSet([name for name, _ in named], encoded=[data for _, data in named])


def read_source(source: str) -> ImageSet:
    """The images of a PNG directory, a gs:// PNG prefix, or an IDX file, with stable ids (file name or index)."""
    if storage.is_gcs(source):
        if not source.endswith("/") and storage.exists(source):
            return read_idx_images(storage.read_bytes(source), source)
        prefix = source.rstrip("/") + "/"
        uris = sorted(u for u in storage.list_uris(prefix) if u.lower().endswith(".png"))
        if not uris:
            raise BatchInputError(f"{source}: no .png objects under this prefix (and it is not an IDX object)")
        return read_png_files([(u[len(prefix) :], storage.read_bytes(u)) for u in uris])
    path = Path(source).expanduser()
    if path.is_file():
        return read_idx_images(path.read_bytes(), str(path))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
        if not files:
            raise BatchInputError(f"{source}: no .png files in this directory")
        return read_png_files([(str(p.relative_to(path)), p.read_bytes()) for p in files])
    raise BatchInputError(f"{source}: no such file or directory (give a PNG directory, a gs:// prefix or an IDX file)")


# ---- scoring ------------------------------------------------------------------------------------------------------


def _init_worker(model_path: str, input_name: str) -> None:
    global _classifier
    from service.runtime import OnnxClassifier

    _classifier = OnnxClassifier(model_path, input_name)
    _classifier.warm_up()


def _score(pixels: np.ndarray) -> np.ndarray:
    assert _classifier is not None, "the worker was not initialised"
    return _classifier.predict(pixels.astype(np.float32))


def _score_pngs(task: tuple[int, list[bytes]]) -> np.ndarray:
    offset, blobs = task
    return _score(decode_pngs(blobs, offset))


class BatchScorer:
    """One OnnxClassifier per worker process (the service's one-thread-per-core layout), started once."""

    def __init__(self, model_uri: str, workers: int | None = None):
        from service.model_bundle import load_bundle

        self.bundle = load_bundle(model_uri)
        self.workers = workers or os.cpu_count() or 1
        args = (self.bundle.model_path, self.bundle.metadata["input"]["name"])
        context = multiprocessing.get_context("spawn")  # fresh workers: no ONNX Runtime state copied by fork
        self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=args)
        self._pool.map(_noop, range(self.workers))  # wait until every worker has loaded and warmed up

    def score(self, pixels: np.ndarray) -> np.ndarray:
        chunks = [pixels[i : i + CHUNK] for i in range(0, len(pixels), CHUNK)]
        return np.concatenate(self._pool.map(_score, chunks)) if chunks else np.empty((0, 10), np.float32)

    def score_images(self, images: ImageSet) -> np.ndarray:
        """Probabilities for every image; PNG files are decoded in the workers, beside their inference."""
        if images.pixels is not None or not images.encoded:
            return self.score(images.decoded())
        blobs = images.encoded
        tasks = [(i, blobs[i : i + CHUNK]) for i in range(0, len(blobs), CHUNK)]
        return np.concatenate(self._pool.map(_score_pngs, tasks))

    def worker_cpu_seconds(self) -> float:
        """User + system CPU seconds the worker processes used so far (Linux /proc), for load-independent cost."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for process in self._pool._pool:  # type: ignore[attr-defined]
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def close(self) -> None:
        self._pool.close()
        self._pool.join()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def _noop(_: int) -> None:
    return None


def inference_limit(model_path: str, input_name: str, pixels: np.ndarray) -> tuple[float, float]:
    """(single-thread images per wall second, per CPU second): the same OnnxClassifier in this process, no
    decoding or inter-process traffic. Times the cores, the first is the issue's inference-only limit."""
    from service.runtime import OnnxClassifier

    classifier = OnnxClassifier(model_path, input_name)
    classifier.warm_up()
    floats = pixels.astype(np.float32)
    start, cpu = time.perf_counter(), time.thread_time()
    for i in range(0, len(floats), CHUNK):
        classifier.predict(floats[i : i + CHUNK])
    return len(floats) / (time.perf_counter() - start), len(floats) / (time.thread_time() - cpu)


# ---- writing predictions -----------------------------------------------------------------------------------------


def prediction_rows(images: ImageSet, probabilities: np.ndarray, class_names: list[str], version: str) -> list[dict]:
    classes = probabilities.argmax(axis=1)
    return [
        {
            "image_id": image_id,
            "class_id": int(c),
            "class_name": class_names[int(c)],
            "probabilities": [round(float(p), 6) for p in row],
            "model_version": version,
        }
        for image_id, c, row in zip(images.ids, classes, probabilities, strict=True)
    ]


def encode_predictions(rows: list[dict], output: str) -> tuple[bytes, str]:
    """JSONL (one object per line) or Parquet, chosen by the output's suffix."""
    if output.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue(), "application/vnd.apache.parquet"
    if output.endswith(".jsonl"):
        return "".join(json.dumps(row) + "\n" for row in rows).encode(), "application/jsonl"
    raise BatchInputError(f"--output {output}: use a .jsonl or .parquet name")


# ---- command line -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lifecycle batch-predict", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a directory of PNGs, a gs:// prefix of PNGs, or an IDX image file")
    parser.add_argument("--env", help="config environment (default: $FMNIST_ENV or local)")
    parser.add_argument("--model", help="model reference or version directory (default: <models bucket>@champion)")
    parser.add_argument("--output", required=True, help="predictions file: .jsonl or .parquet (local or gs://)")
    parser.add_argument("--workers", type=int, help="worker processes, one ONNX Runtime thread each (default: cores)")
    parser.add_argument("--vertex", action="store_true", help="score on Vertex AI batch prediction (gcp target)")
    parser.add_argument("--dry-run", action="store_true", help="with --vertex: print the job request, send nothing")
    return parser.parse_args(argv)


def run_vertex(args, settings) -> int:
    from trainer.api import CommandError, batch_prediction_request, send_batch_prediction

    try:
        request = batch_prediction_request(settings, args.source, args.model or "champion", args.output)
        if args.dry_run:
            print(json.dumps(request.__dict__, indent=2))
            return 0
        job = send_batch_prediction(settings, request)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Vertex AI batch prediction job {job.resource_name} writes to {request.create['gcs_destination_prefix']}")
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = load_config(args.env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.vertex:
        return run_vertex(args, settings)
    from service.model_errors import ModelLoadError

    model = args.model or f"{settings.models_bucket}@champion"
    start = time.perf_counter()
    try:
        images = read_source(args.source)
        read_s = time.perf_counter() - start
        with BatchScorer(model, args.workers) as scorer:
            started_s = time.perf_counter() - start - read_s
            score_start = time.perf_counter()
            probabilities = scorer.score_images(images)
            score_s = time.perf_counter() - score_start
            bundle = scorer.bundle
        rows = prediction_rows(images, probabilities, bundle.class_names, bundle.version)
        data, content_type = encode_predictions(rows, args.output)
        storage.write_bytes(args.output, data, content_type=content_type)
    except (BatchInputError, ModelLoadError, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    print(
        f"scored {len(rows):,} images with {bundle.version} on {scorer.workers} workers: "
        f"{len(rows) / score_s:,.0f} images/s scoring ({read_s:.2f} s reading, {started_s:.2f} s starting workers); "
        f"{total:.2f} s in all; predictions in {args.output}"
    )
    return 0
