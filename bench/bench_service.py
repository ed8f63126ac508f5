"""Serving figures, measured beside the bare-app anchor on the same model file and machine.

    .venv/bin/python bench/bench_service.py [--model-dir DIR] [--duration 3] [--rounds 3]
        [--litert-python .venv-litert/bin/python]

For each model (a CNN of the size FACTS.md's anchors used, which the serving goals come from; the trainer's demo
architecture; and the local champion when one is registered) it starts `python -m service` and the anchor app
`bare_app.py` ($FMNIST_ANCHORS_DIR, default ../shared/anchors beside the checkout) under gunicorn with 2 sync
workers on loopback and measures, interleaving the servers run by run (medians over --rounds): cold start (process
launch to the first 200 from the predict route, median of 3), single-image latency with one client (wrk, p50/p99),
single-image throughput (binary body), 64-image binary throughput, JSON throughput, peak RSS per worker (VmHWM), and
errors (non-2xx + socket errors) in every run. The service row serves model.onnx, the anchor's file
(MODEL_ARTIFACT=float); the int8 artifact, where the export wrote one, gets a row of its own (service-int8).
With --litert-python (a venv holding ai-edge-litert, flask, gunicorn, orjson) the anchor also runs the LiteRT
export of the same model, to re-check the runtime choice. Load comes from wrk (apt install wrk), bounded by
--duration per run (about 5 x rounds x duration seconds per server and model). Results: printed, and written to
bench/results/bench_service.json. The machine has 2 cores shared with the load generator (and possibly other
work): quote figures with that condition.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from lifecycle.served import ServedProcess, free_port, service_environment  # noqa: E402
from lifecycle.served import start as start_service  # noqa: E402

RESULTS = REPO / "bench" / "results"
DEFAULT_ANCHORS = Path(__file__).resolve().parent.parent.parent / "shared" / "anchors"
ANCHOR_DIR = Path(os.environ.get("FMNIST_ANCHORS_DIR") or DEFAULT_ANCHORS)
TEST_IMAGES = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
GOALS = {
    "cold_start_s": ("<=", 0.3),
    "p50_ms": ("<=", 1.0),
    "p99_ms": ("<=", 3.0),
    "single_rps": (">=", 3500),
    "batch64_img_s": (">=", 30000),
    "peak_rss_worker_mb": ("<=", 100),
    "errors": ("<=", 0),
}
WRK_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("BENCH_CT")
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
"""


def test_images(n: int) -> np.ndarray:
    if TEST_IMAGES.exists():
        with gzip.open(TEST_IMAGES) as fh:
            return np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n].copy()
    return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def small_cnn():
    """The size of model FACTS.md's serving anchors used (2 conv + BN + pool, dense 128): the serving goals' model."""
    import keras
    from keras import layers

    pixels = keras.Input(shape=(28, 28), dtype="float32", name="pixels")
    x = layers.Rescaling(1.0 / 255)(layers.Reshape((28, 28, 1))(pixels))
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(2)(layers.Activation("relu")(layers.BatchNormalization()(x)))
    x = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    return keras.Model(pixels, layers.Dense(10, activation="softmax")(x))


def demo_cnn():
    """The trainer's `demo` preset architecture: what `make demo` serves."""
    from trainer.training.model import build_model
    from trainer.training.train import PRESETS

    return build_model(PRESETS["demo"].model)


def build_model_dir(directory: Path, builder) -> Path:
    """Untrained weights (inference cost does not depend on them), exported to ONNX by the trainer's own exporter
    and to LiteRT for the runtime comparison; metadata with a drift baseline. Built once; delete to rebuild."""
    if (directory / "model.onnx").exists() and (directory / "metadata.json").exists():
        return directory
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from contracts.dataset import CLASS_NAMES
    from contracts.features import compute_image_features, feature_baseline
    from trainer.models.export import export_onnx

    keras.utils.set_random_seed(0)
    model = builder()
    images = test_images(2000)
    predicted = np.asarray(model.predict_on_batch(images.astype(np.float32))).argmax(axis=1)
    directory.mkdir(parents=True, exist_ok=True)
    export_onnx(model, directory / "model.onnx")
    try:
        model.export(str(directory / "model.tflite"), format="litert", verbose=False)
    except Exception as exc:  # noqa: BLE001 - LiteRT is only for the comparison
        print(f"note: LiteRT export failed ({exc}); the LiteRT comparison is skipped")
    metadata = {
        "model_version": f"bench-{directory.name}",
        "class_names": list(CLASS_NAMES),
        "input": {"name": "pixels", "shape": [None, 28, 28], "dtype": "float32", "range": [0, 255]},
        "serving_artifact": "model.onnx",
        "feature_baseline": feature_baseline(compute_image_features(images), predicted),
    }
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def local_champion() -> Path | None:
    from service.config import default_model_uri
    from service.model_errors import ModelLoadError
    from service.model_reference import resolve_version_dir

    try:
        version_dir, _ = resolve_version_dir(default_model_uri(os.environ))
    except ModelLoadError:
        return None
    return Path(version_dir) if (Path(version_dir) / "model.onnx").exists() else None


class Server:
    """One server under load: ours (`python -m service`, started by lifecycle.served, the one launcher of the
    service) or the anchor (bare_app.py, started here: it is gunicorn on another app, from the anchors' directory,
    with its own variables and no health route, so the service's launcher does not fit it)."""

    def __init__(
        self, name: str, kind: str, model_dir: Path, python: str, runtime: str = "ort", extra_env: dict | None = None
    ):
        self.name, self.kind, self.model_dir, self.python, self.runtime = name, kind, model_dir, python, runtime
        self.extra_env = extra_env or {}
        self.served: ServedProcess | None = None
        self.log_dir = RESULTS / name
        if kind == "service":
            self.predict_path, self.raw_path, self.json_path = "/predict", "/predict", "/predict"
        else:
            self.predict_path, self.raw_path, self.json_path = "/predict_raw", "/predict_raw", "/predict_orjson"

    @property
    def port(self) -> int:
        return self.served.port

    @property
    def proc(self) -> subprocess.Popen:
        return self.served.process

    def launch(self) -> ServedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "service":  # this checkout's service, whatever the interpreter has installed
            env = service_environment(MODEL_URI=str(self.model_dir), WORKERS="2", **self.extra_env)
            return start_service(self.log_dir, env, python=self.python)
        return self.start_anchor()

    def start_anchor(self) -> ServedProcess:
        """bare_app.py under gunicorn, 2 sync workers, one inference thread each, on a free loopback port."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "MODEL_URI", "PROMETHEUS"))}
        artifact = "model.onnx" if self.runtime == "ort" else "model.tflite"
        env.update(RUNTIME=self.runtime, MODEL=str(self.model_dir / artifact), THREADS="1")
        gunicorn = str(Path(self.python).parent / "gunicorn")
        stdout, stderr = self.log_dir / "service.stdout", self.log_dir / "service.stderr"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(
                [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "bare_app:app"],
                env=env,
                cwd=str(ANCHOR_DIR),
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return ServedProcess(f"http://127.0.0.1:{port}", port, process, stdout, stderr)

    def start(self, body: bytes) -> float:
        """Launch and poll the predict route until the first 200; seconds from launch."""
        started = time.perf_counter()
        self.served = self.launch()
        deadline = started + 60
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_dir}")
            try:
                if (
                    self.served.request("POST", self.raw_path, body, {"Content-Type": "application/octet-stream"})[0]
                    == 200
                ):
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError(f"{self.name} did not answer within 60 s; see {self.log_dir}")

    def worker_pids(self) -> list[int]:
        return self.served.worker_pids()

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its live workers: what the server spent, whatever else ran."""
        ticks = 0
        for pid in [self.proc.pid, *self.worker_pids()]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_mb(self, field: str) -> list[float]:
        out = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    out.append(int(line.split()[1]) / 1024)
        return out

    def stop(self) -> None:
        if self.served is not None:
            self.served.stop()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(
    server: Server, path: str, body_file: Path, content_type: str, threads: int, connections: int, duration: int
) -> dict:
    script = RESULTS / "post.lua"
    script.write_text(WRK_LUA)
    env = {**os.environ, "BENCH_CT": content_type, "BENCH_BODY": str(body_file)}
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{server.port}{path}",
    ]
    cpu_before = server.cpu_seconds()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 30).stdout
    cpu = server.cpu_seconds() - cpu_before
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        result[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    result["socket_errors"] = sum(int(x) for x in sock.groups()) if sock else 0
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    result["server_cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
    return result


RUNS = {  # name: (body, path attribute, content type, wrk threads, connections)
    "latency_1": ("raw1", "raw_path", "application/octet-stream", 1, 1),
    "throughput_1": ("raw1", "raw_path", "application/octet-stream", 1, 8),
    "throughput_64": ("raw64", "raw_path", "application/octet-stream", 1, 4),
    "json_1": ("json1", "json_path", "application/json", 1, 8),
    "json_64": ("json64", "json_path", "application/json", 1, 4),
}


def bench_servers(servers: dict, bodies: dict, duration: int, cold_starts: int, rounds: int) -> dict:
    """Interleaved: cold starts alternate between the servers, then every load run goes round the servers
    `rounds` times, and each figure is the median over rounds. The machine's load drifts (other work shares the
    2 cores); interleaving keeps that drift out of the ratios."""
    one = bodies["raw1"].read_bytes()
    starts = {name: [] for name in servers}
    for attempt in range(cold_starts):
        for name, server in servers.items():
            starts[name].append(server.start(one))
            if attempt < cold_starts - 1:
                server.stop()
            time.sleep(0.3)
    time.sleep(0.5)
    idle = {name: server.rss_mb("VmRSS") for name, server in servers.items()}
    runs = {name: {run: [] for run in RUNS} for name in servers}
    for _ in range(rounds):
        for run, (body, path_attr, content_type, threads, connections) in RUNS.items():
            for name, server in servers.items():
                runs[name][run].append(
                    run_wrk(
                        server, getattr(server, path_attr), bodies[body], content_type, threads, connections, duration
                    )
                )
    results = {}
    for name, server in servers.items():
        peak = server.rss_mb("VmHWM")
        server.stop()

        def median(run, key, name=name):
            return statistics.median(r[key] for r in runs[name][run])

        all_runs = [r for per_run in runs[name].values() for r in per_run]
        results[name] = {
            "cold_start_s": statistics.median(starts[name]),
            "cold_starts_s": starts[name],
            "p50_ms": median("latency_1", "p50_ms"),
            "p99_ms": median("latency_1", "p99_ms"),
            "single_rps": median("throughput_1", "rps"),
            "batch64_img_s": median("throughput_64", "rps") * 64,
            "json1_rps": median("json_1", "rps"),
            "json64_img_s": median("json_64", "rps") * 64,
            "cpu_us_1": median("throughput_1", "server_cpu_us_per_request"),
            "cpu_us_64": median("throughput_64", "server_cpu_us_per_request"),
            "cpu_us_json1": median("json_1", "server_cpu_us_per_request"),
            "idle_rss_worker_mb": max(idle[name]),
            "peak_rss_worker_mb": max(peak),
            "errors": sum(r["non2xx"] + r["socket_errors"] for r in all_runs),
            "requests": sum(r["requests"] for r in all_runs),
            "runs": runs[name],
        }
    return results


def inference_limit(model_path: Path, images: np.ndarray, repeat: int = 300) -> float:
    """Images/s of inference alone for 64-image requests on the machine's cores: one single-thread session built
    exactly as a service worker builds it (service.runtime.OnnxClassifier), times the number of cores (one worker
    per core). The ceiling the 64-image service figure is compared with."""
    from service.runtime import OnnxClassifier

    classifier = OnnxClassifier(str(model_path), "pixels")
    batch = images[:64].astype(np.float32)
    for _ in range(20):
        classifier.predict(batch)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        classifier.predict(batch)
        times.append(time.perf_counter() - started)
    return 64 / statistics.median(times) * (os.cpu_count() or 1)


def int8_artifact(model_dir: Path) -> Path | None:
    """The int8 file the export's gate passed (metadata int8_artifact), if this directory has one."""
    try:
        name = json.loads((model_dir / "metadata.json").read_text()).get("int8_artifact")
    except (OSError, ValueError):
        return None
    return model_dir / name if name and (model_dir / name).exists() else None


def write_bodies(images: np.ndarray) -> dict:
    bodies = {
        "raw1": images[:1].tobytes(),
        "raw64": images[:64].tobytes(),
        "json1": json.dumps({"instances": images[:1].tolist()}).encode(),
        "json64": json.dumps({"instances": images[:64].tolist()}).encode(),
    }
    paths = {}
    for name, data in bodies.items():
        paths[name] = RESULTS / f"body-{name}.bin"
        paths[name].write_bytes(data)
    return paths


def verdict(metric: str, value: float) -> str:
    if metric not in GOALS:
        return ""
    op, goal = GOALS[metric]
    ok = value <= goal if op == "<=" else value >= goal
    return f"{op} {goal:g} {'PASS' if ok else 'MISS'}"


def print_table(title: str, ours: dict, anchors: dict) -> None:
    rows = [
        ("cold_start_s", "cold start to first 200 (s)", "{:.3f}"),
        ("p50_ms", "1 image, 1 client p50 (ms)", "{:.2f}"),
        ("p99_ms", "1 image, 1 client p99 (ms)", "{:.2f}"),
        ("single_rps", "1 image/request binary (req/s)", "{:,.0f}"),
        ("batch64_img_s", "64 images/request binary (img/s)", "{:,.0f}"),
        ("json1_rps", "1 image/request JSON (req/s)", "{:,.0f}"),
        ("json64_img_s", "64 images/request JSON (img/s)", "{:,.0f}"),
        ("cpu_us_1", "server CPU per 1-image request (us)", "{:,.0f}"),
        ("cpu_us_64", "server CPU per 64-image request (us)", "{:,.0f}"),
        ("cpu_us_json1", "server CPU per 1-image JSON request (us)", "{:,.0f}"),
        ("idle_rss_worker_mb", "RSS per worker idle (MB)", "{:.0f}"),
        ("peak_rss_worker_mb", "RSS per worker peak (MB)", "{:.0f}"),
        ("errors", "errors (all runs)", "{:d}"),
    ]
    names = list(anchors)
    print(f"\n== {title}")
    header = f"{'metric':36s} {'service':>10s} " + " ".join(f"{n:>12s} {'ratio':>6s}" for n in names) + "  goal"
    print(header)
    for key, label, fmt in rows:
        line = f"{label:36s} {fmt.format(ours[key]):>10s} "
        for name in names:
            value = anchors[name][key]
            ratio = ours[key] / value if value else float("nan")
            line += f"{fmt.format(value):>12s} {ratio:6.2f} "
        print(line + " " + verdict(key, ours[key]))


# Issue 26's serving goals: (label, figure, goal as service / anchor, higher is better)
SPEED_GOALS = (
    ("1 image/request binary, req/s", "single_rps", 0.95, True),
    ("server CPU per 1-image request", "cpu_us_1", 1.05, False),
    ("64 images/request binary, images/s", "batch64_img_s", 0.95, True),
    ("1 image/request JSON, req/s", "json1_rps", 0.95, True),
    ("server CPU per 1-image JSON request", "cpu_us_json1", 1.05, False),  # the robust figure under load
)
LIMIT_SHARE_GOAL = 0.75


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def print_speed_goals(ours: dict, anchor: dict, limits: dict) -> None:
    """The figures issue 26's table quotes, service against the anchor of the same run, each against its goal."""
    print(f"-- speed goals (service / anchor, same run; {cpu_model()}, load {os.getloadavg()[0]:.2f} now)")
    for label, key, goal, higher in SPEED_GOALS:
        ratio = ours[key] / anchor[key] if anchor[key] else float("nan")
        ok = ratio >= goal if higher else ratio <= goal
        print(
            f"{label:40s} {ours[key]:>10,.0f} {anchor[key]:>10,.0f} {ratio:6.2f}x  "
            f"{'>=' if higher else '<='} {goal:.2f}x {'PASS' if ok else 'MISS'}"
        )
    limit = limits["float"]
    for name, figures in (("service", ours), ("anchor", anchor)):
        share = figures["batch64_img_s"] / limit
        passed = "PASS" if share >= LIMIT_SHARE_GOAL else "MISS"
        verdict_ = f">= {LIMIT_SHARE_GOAL:.0%} {passed}" if name == "service" else ""
        print(f"64 images/request, {name}: {share:.0%} of the inference-only limit {limit:,.0f} images/s {verdict_}")
    if "int8" in limits:
        int8 = limits["int8"]
        print(f"inference-only limit: int8 {int8:,.0f} vs float {limit:,.0f} images/s ({int8 / limit:.2f}x)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="model version directory to bench (default: the small and the demo CNN built here, "
        "plus the local champion if registered)",
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per load run (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per load run (default 3)")
    parser.add_argument("--cold-starts", type=int, default=3)
    serving_venv = REPO / ".venv-serve" / "bin" / "python"
    parser.add_argument(
        "--python",
        default=str(serving_venv) if serving_venv.exists() else sys.executable,
        help="interpreter for both servers (default: .venv-serve, the serving-only environment, "
        "which starts like the image does; else this interpreter)",
    )
    parser.add_argument("--litert-python", help="interpreter of a venv with ai-edge-litert, flask, gunicorn, orjson")
    args = parser.parse_args(argv)
    args.python = str(Path(args.python).absolute())
    args.litert_python = str(Path(args.litert_python).absolute()) if args.litert_python else None
    if not shutil.which("wrk"):
        print("error: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    models = {}
    if args.model_dir:
        models["given"] = args.model_dir.absolute()
    else:
        models["small-cnn"] = build_model_dir(RESULTS / "model-small-cnn", small_cnn)
        models["demo-architecture"] = build_model_dir(RESULTS / "model-demo-architecture", demo_cnn)
        champion = local_champion()
        if champion:
            models["champion"] = champion
    bodies = write_bodies(test_images(64))
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), load average {load[0]:.2f} at start; wrk shares the cores; "
        f"servers run {args.python}"
    )
    report = {
        "load_average_start": load,
        "cores": os.cpu_count(),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "python": args.python,
        "models": {},
    }
    for label, model_dir in models.items():
        # the anchor serves model.onnx, so the service row is pinned to it too: MODEL_ARTIFACT=auto (the default)
        # serves int8 where the export measured it faster on this CPU, and a ratio of two artifacts means nothing
        servers = {
            "service": Server(
                f"{label}-service", "service", model_dir, args.python, extra_env={"MODEL_ARTIFACT": "float"}
            )
        }
        servers["anchor-ort"] = Server(f"{label}-anchor-ort", "anchor", model_dir, args.python, "ort")
        int8 = int8_artifact(model_dir)
        if int8 is not None:
            servers["service-int8"] = Server(
                f"{label}-service-int8", "service", model_dir, args.python, extra_env={"MODEL_ARTIFACT": "int8"}
            )
        if args.litert_python and (model_dir / "model.tflite").exists():
            servers["anchor-lite"] = Server(f"{label}-anchor-lite", "anchor", model_dir, args.litert_python, "lite")
        try:
            results = bench_servers(servers, bodies, args.duration, args.cold_starts, args.rounds)
        finally:
            for server in servers.values():
                server.stop()
        images = test_images(64)
        limits = {"float": inference_limit(model_dir / "model.onnx", images)}
        if int8 is not None:
            limits["int8"] = inference_limit(int8, images)
        report["models"][label] = {"model_dir": str(model_dir), **results, "inference_limit_img_s": limits}
        print_table(f"{label} ({model_dir})", results["service"], {k: v for k, v in results.items() if k != "service"})
        for artifact, limit in limits.items():
            served = results["service" if artifact == "float" else "service-int8"]["batch64_img_s"]
            print(
                f"64 images/request, {artifact}: service {served:,.0f} images/s = {served / limit:.0%} of the "
                f"inference-only limit {limit:,.0f} ({os.cpu_count()} cores x one single-thread session)"
                + (f"; {served / limits['float']:.2f}x the float limit" if artifact == "int8" else "")
            )
        print_speed_goals(results["service"], results["anchor-ort"], limits)
    report["load_average_end"] = os.getloadavg()
    (RESULTS / "bench_service.json").write_text(json.dumps(report, indent=2))
    print(f"\nload average at end {report['load_average_end'][0]:.2f}; details in {RESULTS / 'bench_service.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
