"""Dynamic batching on the serving cores: many concurrent single-image clients, scored one request per ONNX Runtime
call (the anchor and the service, sync workers) or several requests per call (bench/batching_app.py, gthread).

    PYTHONPATH=. .venv/bin/python bench/bench_batching.py [--model-dir DIR] [--connections 32] [--duration 3]
        [--rounds 3] [--threads 16] [--waits off,0,1]

Servers, 2 workers each, on the same model.onnx, interleaved run by run (medians over --rounds): the bare anchor
(sync), the service (sync, MODEL_ARTIFACT=float), and the batching prototype under gthread once per --waits value
(`off`: the threads without batching; `0`: a batch is what is already queued; N: wait up to N ms for more). wrk
posts one binary image per request with --connections connections. Printed per server: req/s, p50, p99, server CPU
per request, and each prototype's mean requests per ONNX Runtime call; every figure beside the anchor's and the
service's of the same round. Why a prototype and not the service: the service's per-request state (drift buffer,
feedback ring, rollout counters) is written by one request at a time in a sync worker; the prototype first shows
whether batching can win on these cores at all. Results also in bench/results/bench_batching.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_service as bs

REPO = bs.REPO


class Batching(bs.Server):
    """bench/batching_app.py under gunicorn gthread workers."""

    def __init__(self, name: str, model_dir: Path, python: str, wait: str, threads: int):
        super().__init__(name, "anchor", model_dir, python)
        self.wait, self.threads = wait, threads

    def launch(self) -> bs.ServedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = bs.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "MODEL_URI", "PROMETHEUS"))}
        env.update(BATCH_MODEL=str(self.model_dir / "model.onnx"), BATCH_WAIT_MS=self.wait, PYTHONPATH=str(REPO))
        gunicorn = str(Path(self.python).parent / "gunicorn")
        command = [gunicorn, "-k", "gthread", "--threads", str(self.threads), "-w", "2", "-b", f"127.0.0.1:{port}"]
        stdout, stderr = self.log_dir / "service.stdout", self.log_dir / "service.stderr"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(
                [*command, "bench.batching_app:app"],
                env=env,
                cwd=str(REPO),
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return bs.ServedProcess(f"http://127.0.0.1:{port}", port, process, stdout, stderr)

    def per_call(self) -> float:
        """Mean requests per ONNX Runtime call over the workers that answered /stats (each reply is one worker)."""
        seen: dict[int, tuple[int, int]] = {}
        for _ in range(20):
            stats = json.loads(self.served.request("GET", "/stats")[2])
            seen[stats["pid"]] = (stats["batches"], stats["requests"])
        batches = sum(b for b, _ in seen.values())
        return sum(r for _, r in seen.values()) / batches if batches else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, help="a model version directory (default: the local champion, else the demo CNN)"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16, help="gthread threads per worker (default 16)")
    parser.add_argument("--waits", default="off,0,1", help="BATCH_WAIT_MS values, comma-separated (default off,0,1)")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or bs.local_champion()
    if model_dir is None:  # `make bench` on a fresh clone: the demo architecture, as bench_service.py builds it
        model_dir = bs.build_model_dir(bs.RESULTS / "model-demo-architecture", bs.demo_cnn)
    model_dir = model_dir.absolute()
    if not (model_dir / "model.onnx").exists():
        print(f"error: {model_dir} has no model.onnx: pass --model-dir (a model version directory)", file=sys.stderr)
        return 2
    bs.RESULTS.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    body = bs.write_bodies(bs.test_images(64))["raw1"]
    servers: dict[str, bs.Server] = {
        "anchor": bs.Server("batching-anchor", "anchor", model_dir, python, "ort"),
        "service": bs.Server("batching-service", "service", model_dir, python, extra_env={"MODEL_ARTIFACT": "float"}),
    }
    for wait in args.waits.split(","):
        servers[f"gthread wait={wait}"] = Batching(f"batching-{wait}", model_dir, python, wait, args.threads)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores ({bs.cpu_model()}), load average {load[0]:.2f} at start; wrk shares them")
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    per_call: dict[str, float] = {}
    try:
        for server in servers.values():
            server.start(body.read_bytes())
        time.sleep(0.5)
        for _ in range(args.rounds):
            for name, server in servers.items():
                path = "/predict" if server.kind == "service" else "/predict_raw"
                runs[name].append(
                    bs.run_wrk(server, path, body, "application/octet-stream", 1, args.connections, args.duration)
                )
        for name, server in servers.items():
            if isinstance(server, Batching):
                per_call[name] = server.per_call()
    finally:
        for server in servers.values():
            server.stop()
    report: dict[str, object] = {"load_average_start": load, "connections": args.connections, "servers": {}}
    print(f"\n== 1 image/request, binary, wrk -c{args.connections}, {args.rounds} rounds of {args.duration} s")
    print(
        f"{'server':22s} {'req/s':>8s} {'vs anchor':>9s} {'vs service':>10s} {'p50 ms':>7s} {'p99 ms':>7s} "
        f"{'CPU us/req':>10s} {'req/call':>8s} errors"
    )
    for name, results in runs.items():

        def med(key: str, rs: list[dict] = results) -> float:
            return statistics.median(r[key] for r in rs)

        def paired(other: str, rs: list[dict] = results) -> float:
            return statistics.median(r["rps"] / o["rps"] for r, o in zip(rs, runs[other], strict=True))

        errors = sum(r["non2xx"] + r["socket_errors"] for r in results)
        figures = {
            "rps": med("rps"),
            "vs_anchor": paired("anchor"),
            "vs_service": paired("service"),
            "p50_ms": med("p50_ms"),
            "p99_ms": med("p99_ms"),
            "cpu_us": med("server_cpu_us_per_request"),
            "per_call": per_call.get(name, 1.0),
            "errors": errors,
            "runs": results,
        }
        report["servers"][name] = figures  # type: ignore[index]
        print(
            f"{name:22s} {figures['rps']:8,.0f} {figures['vs_anchor']:8.2f}x {figures['vs_service']:9.2f}x "
            f"{figures['p50_ms']:7.2f} {figures['p99_ms']:7.2f} {figures['cpu_us']:10,.0f} "
            f"{figures['per_call']:8.2f} {errors}"
        )
    report["load_average_end"] = os.getloadavg()
    (bs.RESULTS / "bench_batching.json").write_text(json.dumps(report, indent=2))
    print(f"load average at end {report['load_average_end'][0]:.2f}; details in {bs.RESULTS / 'bench_batching.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
