"""CPU per request and peak RSS per worker for every hostile request, beside a valid 64-image request.

    .venv/bin/python bench/bench_hostile.py [--model-dir DIR] [--repeat 10]

Each case gets a fresh `python -m service` with one gunicorn worker (so the worker's VmHWM is that case's peak),
one warm-up prediction, then --repeat sends of the case; CPU is the worker's utime + stime (/proc/<pid>/stat)
divided by the sends. The reference is the same for a valid request of 64 images as nested JSON lists. The
issue's bounds: the worst case at most 10x the reference's CPU and 2x its peak RSS. Without --model-dir the
model is the trainer's demo architecture (what `make demo` serves) with untrained weights (inference cost does not
depend on them), exported by the trainer's exporter once into bench/results/hostile-model (needs TensorFlow).
Prints the machine's load average:
the machine is shared, so CPU seconds and VmHWM are the figures to quote, not wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lifecycle.checks.hostile_corpus import Hostile, corpus, send, valid_64  # noqa: E402 - after the path insert
from lifecycle.served import service_environment, start  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPU_BOUND, RSS_BOUND = 10.0, 2.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024


def measure(model_dir: Path, hostile: Hostile, repeat: int, scratch: Path) -> dict:
    """One fresh single-worker server: warm up, send the case `repeat` times, read the worker's CPU and peak."""
    body = hostile.body() if hostile.body else None
    hostile.body = (lambda raw: lambda: raw)(body) if body is not None else None
    server = start(scratch, service_environment(MODEL_URI=str(model_dir), WORKERS="1", MAX_INSTANCES="64"))
    try:
        server.wait_healthy(workers=1)
        (worker,) = server.worker_pids()
        assert server.request("POST", "/predict", b"\0" * 784, {"Content-Type": "application/octet-stream"})[0] == 200
        before = cpu_seconds(worker)
        statuses = {send(server.port, hostile)[0] for _ in range(repeat)}
        cpu = (cpu_seconds(worker) - before) / repeat
        alive = server.worker_pids() == [worker]
        return {"cpu_ms": cpu * 1000, "peak_mb": peak_rss_mb(worker), "statuses": statuses, "alive": alive}
    finally:
        server.stop()


def demo_model(directory: Path = REPO / "bench" / "results" / "hostile-model") -> Path:
    """The demo preset's architecture as a model directory (model.onnx + metadata.json); built once."""
    if (directory / "model.onnx").exists() and (directory / "metadata.json").exists():
        return directory
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import json

    import keras
    import numpy as np

    from contracts.dataset import CLASS_NAMES
    from contracts.features import compute_image_features, feature_baseline
    from trainer.models.export import export_onnx
    from trainer.training.model import build_model
    from trainer.training.train import PRESETS

    keras.utils.set_random_seed(0)
    model = build_model(PRESETS["demo"].model)
    images = np.random.default_rng(0).integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    predicted = np.asarray(model.predict_on_batch(images.astype(np.float32))).argmax(axis=1)
    directory.mkdir(parents=True, exist_ok=True)
    export_onnx(model, directory / "model.onnx")
    metadata = {
        "model_version": "bench-hostile-demo-architecture",
        "class_names": list(CLASS_NAMES),
        "input": {"name": "pixels", "shape": [None, 28, 28], "dtype": "float32", "range": [0, 255]},
        "serving_artifact": "model.onnx",
        "feature_baseline": feature_baseline(compute_image_features(images), predicted),
    }
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a model version directory (default: build the tests' model)")
    parser.add_argument("--repeat", type=int, default=10, help="sends per case (default 10)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        scratch = Path(tmp)
        model_dir = args.model_dir or demo_model()
        print(f"model: {model_dir}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
        reference = measure(model_dir, Hostile("valid_64_images_json", valid_64, expect=frozenset({200})), 50, scratch)
        print(f"{'case':42s} {'status':>10s} {'CPU ms/req':>11s} {'x valid':>8s} {'peak MB':>8s} {'x valid':>8s}")
        row = "{:42s} {:>10s} {:>11.2f} {:>8.2f} {:>8.1f} {:>8.2f}"
        print(row.format("valid_64_images_json", "200", reference["cpu_ms"], 1.0, reference["peak_mb"], 1.0))
        results = {}
        seen_methods = False
        for hostile in corpus(max_instances=64):
            if hostile.name.startswith("invented_method_"):
                if seen_methods:
                    continue  # one stands for all: they differ only in the label they would have added
                seen_methods = True
            result = measure(model_dir, hostile, args.repeat, scratch)
            results[hostile.name] = result
            print(
                row.format(
                    hostile.name,
                    ",".join(map(str, sorted(result["statuses"]))),
                    result["cpu_ms"],
                    result["cpu_ms"] / reference["cpu_ms"],
                    result["peak_mb"],
                    result["peak_mb"] / reference["peak_mb"],
                )
            )
        worst_cpu = max(results, key=lambda name: results[name]["cpu_ms"])
        worst_rss = max(results, key=lambda name: results[name]["peak_mb"])
        cpu_ratio = results[worst_cpu]["cpu_ms"] / reference["cpu_ms"]
        rss_ratio = results[worst_rss]["peak_mb"] / reference["peak_mb"]
        errors = [name for name, r in results.items() if max(r["statuses"]) >= 500 or not r["alive"]]
        worst_cpu_ms = results[worst_cpu]["cpu_ms"]
        print(f"\nworst CPU: {worst_cpu} {worst_cpu_ms:.2f} ms = {cpu_ratio:.2f}x valid (bound {CPU_BOUND}x)")
        print(
            f"worst peak RSS: {worst_rss} {results[worst_rss]['peak_mb']:.1f} MB = {rss_ratio:.2f}x valid "
            f"(bound {RSS_BOUND}x)"
        )
        print(f"5xx or dead worker: {errors or 'none'}")
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load average after: {load}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        ok = cpu_ratio <= CPU_BOUND and rss_ratio <= RSS_BOUND and not errors
        print("within bounds" if ok else "OUT OF BOUNDS")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
