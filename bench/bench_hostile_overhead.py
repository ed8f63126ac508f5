"""What the hardening costs valid requests: in-process CPU per request, this tree beside an older commit's.

    .venv/bin/python bench/bench_hostile_overhead.py --model-dir DIR [--baseline COMMIT] [--rounds 5]

Each round runs a fresh process per tree (this checkout, and `git archive COMMIT service contracts` unpacked in a
temporary directory) that posts 1-image JSON, 64-image JSON and 64-image binary bodies through Flask's test client
and prints CPU microseconds per request (time.process_time, best of 3 loops); rounds alternate the trees and the
medians are printed. In-process, so no HTTP or gunicorn cost is included: only parsing, checks, inference, reply.
The machine is shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
import numpy as np
from service.app import create_app
client = create_app({"MODEL_URI": sys.argv[1], "PAGE_ENABLED": "false", "LOG_LEVEL": "ERROR"}).test_client()
rng = np.random.default_rng(0)
cases = {
    "json_1_image": (json.dumps({"instances": [rng.integers(0, 256, 784).tolist()]}), "application/json", 1000),
    "json_64_images": (json.dumps({"instances": rng.integers(0, 256, (64, 28, 28)).tolist()}), "application/json", 100),
    "binary_64_images": (rng.integers(0, 256, (64, 784), dtype=np.uint8).tobytes(), "application/octet-stream", 200),
}
out = {}
for name, (data, content_type, n) in cases.items():
    for _ in range(20):
        assert client.post("/predict", data=data, content_type=content_type).status_code == 200
    loops = []
    for _ in range(3):
        started = time.process_time()
        for _ in range(n):
            client.post("/predict", data=data, content_type=content_type)
        loops.append((time.process_time() - started) / n * 1e6)
    out[name] = min(loops)
print(json.dumps(out))
"""


def run_tree(tree: Path, model_dir: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("SERVICE_STATE_DIR", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    reply = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir)], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(reply.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a model version directory")
    parser.add_argument("--baseline", default="HEAD~1", help="commit to compare with (default HEAD~1)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "archive", args.baseline, "service", "contracts"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {"this tree": REPO, f"baseline {args.baseline}": Path(tmp)}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                results[name].append(run_tree(tree, args.model_dir.resolve()))
    cases = list(results["this tree"][0])
    print(f"{'CPU us per request (median of rounds)':40s}" + "".join(f"{case:>18s}" for case in cases))
    for name, runs in results.items():
        medians = [statistics.median(run[case] for run in runs) for case in cases]
        print(f"{name:40s}" + "".join(f"{m:>18.0f}" for m in medians))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
