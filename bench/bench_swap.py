"""Version swaps under load: wrk saturates the single-image route while the registry alias flips back and forth.

    .venv/bin/python bench/bench_swap.py [--model-dir DIR] [--flips 10] [--duration 10] [--rounds 3] [--poll 0.5]
                                         [--signed]

Two versions of one model directory (default: the demo architecture bench_service.py builds; --model-dir a real
export, e.g. the local champion's version directory) are registered in a throwaway local registry with their
SHA-256 digests, `python -m service` (2 sync workers) follows `<registry>@champion` with MODEL_POLL_S=--poll, and
wrk (1 thread, 8 connections: saturation on 2 cores) posts one binary image per request: --duration seconds with
no change (the reference), then as long again while the alias is flipped --flips times (promoted back and forth
through trainer.models.registry, as an operator would), --rounds times interleaved. Reported: median requests/s
and p99 of both kinds of run, failed requests (non-2xx + socket errors, must be 0), the swaps the workers made
(fmnist_model_swaps_total) and peak RSS per worker (VmHWM: a swap holds two versions at once). Results: printed
and written to bench/results/bench_swap.json. Quote them with the machine's load: wrk shares the cores.
--signed: the registry signs every index (a local key pair) and the service verifies it on each index change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_service as bs

REPO = bs.REPO


def make_versions(model_dir: Path, root: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Copies of the serving files of `model_dir` as versions `names`, each with its own metadata and digests."""
    out = {}
    for name in names:
        directory = root / "build" / name
        directory.mkdir(parents=True)
        for file in ("model.onnx", "model.int8.onnx", "samples.npz"):
            if (model_dir / file).exists():
                shutil.copy2(model_dir / file, directory / file)
        metadata = json.loads((model_dir / "metadata.json").read_text())
        metadata["model_version"] = name
        metadata["files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}
        (directory / "metadata.json").write_text(json.dumps(metadata))
        out[name] = directory
    return out


def registry_with(root: Path, versions: dict[str, Path], signed: bool = False):
    from trainer.models.index_signing import LocalKeySigner
    from trainer.models.registry import ModelRegistry

    signer = LocalKeySigner(root / "promoter") if signed else None
    registry = ModelRegistry(str(root / "models"), accuracy_floor=0.0, regression_tolerance=1.0, signer=signer)
    for name, directory in versions.items():
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}
        registry.register(
            str(directory), {"accuracy": 0.9}, "custom", dataset_version="bench", version=name, extra={"files": files}
        )
    registry.promote(next(iter(versions)))
    return registry


def swaps(server: bs.Server) -> float:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(float(v) for v in re.findall(r'^fmnist_model_swaps_total\{role="champion"\} ([0-9.e+]+)$', text, re.M))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a model version directory (default: the demo architecture)")
    parser.add_argument("--flips", type=int, default=10)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run (default 10)")
    parser.add_argument("--poll", type=float, default=0.5, help="MODEL_POLL_S of the service (default 0.5)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="steady/flipping pairs, interleaved (default 3)")
    parser.add_argument("--artifact", choices=("float", "int8"), default="float", help="MODEL_ARTIFACT (default float)")
    parser.add_argument(
        "--signed", action="store_true", help="sign every index and give the service the public key (issue 25)"
    )
    serving_venv = REPO / ".venv-serve" / "bin" / "python"
    parser.add_argument("--python", default=str(serving_venv) if serving_venv.exists() else sys.executable)
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("error: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    bs.RESULTS.mkdir(parents=True, exist_ok=True)
    model_dir = (args.model_dir or bs.build_model_dir(bs.RESULTS / "model-demo-architecture", bs.demo_cnn)).absolute()
    bodies = bs.write_bodies(bs.test_images(64))
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} at start; wrk shares the cores")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        versions = make_versions(model_dir, root, ("swap-a", "swap-b"))
        registry = registry_with(root, versions, args.signed)
        extra = {"MODEL_POLL_S": str(args.poll), "MODEL_ARTIFACT": args.artifact}
        if args.signed:
            extra["INDEX_PUBLIC_KEY_FILE"] = str(root / "promoter" / "index-signing.pub.pem")
        # the service follows the registry's champion (MODEL_URI <models>@champion), started by lifecycle.served
        reference = Path(f"{root / 'models'}@champion")
        server = bs.Server("swap-service", "service", reference, str(Path(args.python).absolute()), extra_env=extra)
        try:
            server.start(bodies["raw1"].read_bytes())
            time.sleep(1)
            idle = server.rss_mb("VmRSS")
            before = swaps(server)
            flipped: list[str] = []
            steady_runs, flipping_runs = [], []

            def flip() -> None:
                pause = args.duration / (args.flips + 1)
                for _ in range(args.flips):
                    time.sleep(pause)
                    target = "swap-b" if registry.read_index().alias("champion") == "swap-a" else "swap-a"
                    registry.promote(target)
                    flipped.append(target)

            def wrk() -> dict:
                return bs.run_wrk(
                    server, "/predict", bodies["raw1"], "application/octet-stream", 1, args.connections, args.duration
                )

            for _ in range(args.rounds):  # interleaved: the machine's load drifts between runs
                steady_runs.append(wrk())
                flipper = threading.Thread(target=flip)
                flipper.start()
                flipping_runs.append(wrk())
                flipper.join()
                time.sleep(3 * args.poll + 1)  # the last flip reaches both workers before the next steady run
            made = swaps(server) - before
            peak = server.rss_mb("VmHWM")
        finally:
            server.stop()
    report = {
        "load_average_start": load,
        "load_average_end": os.getloadavg(),
        "model_dir": str(model_dir),
        "model_bytes": (model_dir / "model.onnx").stat().st_size,
        "flips": len(flipped),
        "poll_s": args.poll,
        "artifact": args.artifact,
        "signed_index": args.signed,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "steady_runs": steady_runs,
        "flipping_runs": flipping_runs,
        "swaps_all_workers": made,
        "failed_requests": sum(r["non2xx"] + r["socket_errors"] for r in steady_runs + flipping_runs),
        "requests_while_flipping": sum(r["requests"] for r in flipping_runs),
        "idle_rss_worker_mb": max(idle),
        "peak_rss_worker_mb": max(peak),
    }
    (bs.RESULTS / "bench_swap.json").write_text(json.dumps(report, indent=2))
    print(
        f"model {model_dir} ({report['model_bytes'] / 1e6:.1f} MB float ONNX), MODEL_ARTIFACT={args.artifact}, "
        f"2 workers, MODEL_POLL_S={args.poll}, signed index: {'yes' if args.signed else 'no'}"
    )
    for label, runs in (("steady", steady_runs), ("flipping", flipping_runs)):
        rps = statistics.median(r["rps"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        print(f"{label:9s} median of {len(runs)}: {rps:8,.0f} req/s, p99 {p99:.2f} ms")
    print(
        f"failed requests: {report['failed_requests']} (non-2xx + socket errors, all runs) of "
        f"{sum(r['requests'] for r in steady_runs + flipping_runs):,}"
    )
    print(
        f"alias flipped {len(flipped)} times; swaps made by the 2 workers: {made:.0f} (at most {2 * len(flipped)}: "
        "a flip undone before a worker's next poll needs no swap)"
    )
    print(f"RSS per worker: idle {max(idle):.0f} MB, peak (VmHWM) {max(peak):.0f} MB (goal <= 100)")
    print(f"load average at end {report['load_average_end'][0]:.2f}; details in {bs.RESULTS / 'bench_swap.json'}")
    return 0 if report["failed_requests"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
