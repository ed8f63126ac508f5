"""Batch prediction throughput on the 10,000 real test images beside the inference-only limit, in one run.

    .venv/bin/python bench/bench_batch_predict.py [--model REF] [--rounds 3] [--workers N]

The limit is what the issue defines: single-thread ONNX Runtime images/s (the service's OnnxClassifier, in this
process, no decoding, no inter-process traffic) times the cores. The batch figure is `lifecycle.batch.batch_predict`'s
BatchScorer (one worker process per core, one ONNX Runtime thread each) scoring the same images from the IDX file
and from a directory of 10,000 PNGs (decoded in the workers by the service's own decoder). Rounds interleave the
limit and the batch runs; medians are printed with the machine's load (`uptime`): the 2 cores are shared.
Default model: the local registry's champion (run `make demo` first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TEST_IMAGES = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def main() -> int:
    from PIL import Image

    from lifecycle.batch.batch_predict import BatchScorer, inference_limit, read_source
    from settings import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model reference or version directory (default: local champion)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, help="default: cores")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    model = args.model or f"{load_config('local').models_bucket}@champion"
    print(f"load before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")

    start = time.perf_counter()
    images = read_source(str(TEST_IMAGES))
    pixels = images.decoded()
    idx_read_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        for image_id, image in zip(images.ids, pixels, strict=True):
            Image.fromarray(image).save(Path(folder) / f"{image_id.split(':')[1]}.png")
        start = time.perf_counter()
        from_pngs = read_source(folder)  # reads the files; the workers decode them
        png_read_s = time.perf_counter() - start

    start = time.perf_counter()
    scorer = BatchScorer(model, args.workers)
    pool_start_s = time.perf_counter() - start
    limits, batch, batch_cpu, png_batch = [], [], [], []
    try:
        input_name = scorer.bundle.metadata["input"]["name"]
        for _ in range(args.rounds):
            limits.append(inference_limit(scorer.bundle.model_path, input_name, pixels))
            start, cpu = time.perf_counter(), scorer.worker_cpu_seconds()
            probabilities = scorer.score(pixels)
            batch.append(len(pixels) / (time.perf_counter() - start))
            batch_cpu.append(len(pixels) / (scorer.worker_cpu_seconds() - cpu))
            start = time.perf_counter()
            from_png_probabilities = scorer.score_images(from_pngs)
            png_batch.append(len(pixels) / (time.perf_counter() - start))
            assert (from_png_probabilities.argmax(axis=1) == probabilities.argmax(axis=1)).all(), "PNG != IDX"
    finally:
        scorer.close()
    per_thread = statistics.median(wall for wall, _ in limits)
    per_cpu_second = statistics.median(cpu for _, cpu in limits)
    limit = per_thread * cores
    scored = statistics.median(batch)
    png_scored = statistics.median(png_batch)
    print(
        f"model {scorer.bundle.version} ({model}); {len(pixels):,} images; {cores} cores, "
        f"{scorer.workers} workers; medians of {args.rounds} rounds"
    )
    print(f"inference-only limit: {per_thread:,.0f} images/s per thread x {cores} = {limit:,.0f} images/s")
    print(
        f"batch scoring (pixels in memory): {scored:,.0f} images/s = {scored / limit:.0%} of the limit "
        f"(rounds: {', '.join(f'{b:,.0f}' for b in batch)})"
    )
    print(
        f"CPU cost (load-independent): limit {per_cpu_second:,.0f}, batch workers {statistics.median(batch_cpu):,.0f} "
        f"images per CPU second = {statistics.median(batch_cpu) / per_cpu_second:.0%}"
    )
    print(
        f"reading: IDX (with decoding) {idx_read_s:.2f} s, 10,000 PNG files {png_read_s:.2f} s; "
        f"worker start {pool_start_s:.2f} s"
    )
    print(f"PNG files decoded and scored in the workers: {png_scored:,.0f} images/s")
    print(f"predicted classes: {sorted(set(probabilities.argmax(axis=1).tolist()))}")
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
