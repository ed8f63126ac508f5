"""Where the service's microseconds go per request: a per-feature cost table, measured in one process.

    PYTHONPATH=. .venv/bin/python bench/profile_service.py [--model-dir DIR] [--requests 3000] [--rounds 5]
        [--pairs 40] [--cprofile]

Why in-process: the HTTP bench (bench_service.py) gives the service's CPU per request beside the anchor's, but
not which feature spends it, and under load its figures move by tens of microseconds. Here the service's WSGI
app and the bare anchor's Flask app (`$FMNIST_ANCHORS_DIR/bare_app.py`) are called directly with the environ
gunicorn would pass, on the same model, and each per-request feature is timed alone with the real objects and
the arguments a 1-image binary request gives it (CPU time, median over --rounds). What gunicorn spends on the
socket and the HTTP parse is the same for both servers and is not in these figures. Prometheus metrics run in
multiprocess mode (files under a scratch state directory), as under gunicorn; the request log goes to a scratch
file, as the bench's servers' stdout does. `--cprofile` prints the 25 costliest functions of the service's path.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Before numpy is imported, as `python -m service` and gunicorn_conf.py do: one BLAS thread. Without it, drift's
# matrix products ran on a pool of OpenBLAS threads whose spinning counted as this process's CPU, and drift
# sampling looked ~10x dearer (2,000 us per 64-image request at load 16, against ~170 us with one thread).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PAIR_REQUESTS = 200
ANCHOR_DIR = Path(os.environ.get("FMNIST_ANCHORS_DIR") or REPO.parent / "shared" / "anchors")


def environ(path: str, body: bytes, content_type: str, query: str = "") -> dict:
    """What gunicorn hands the app for one request (the fields the service and Flask read)."""
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_USER_AGENT": "wrk",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def caller(app: Callable, path: str, body: bytes, content_type: str) -> Callable[[], None]:
    statuses = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    def one() -> None:
        out = app(environ(path, body, content_type), start_response)
        b"".join(out)
        if hasattr(out, "close"):
            out.close()
        status = statuses.pop()
        if not status.startswith("200"):
            raise RuntimeError(f"{path} answered {status}")

    return one


def cpu_us(function: Callable[[], object], n: int, warm: int = 200) -> float:
    """CPU microseconds per call (process time: what other processes on the machine do is not counted)."""
    for _ in range(min(warm, n)):
        function()
    started = time.process_time()
    for _ in range(n):
        function()
    return (time.process_time() - started) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a model version directory (default: the local champion)")
    parser.add_argument("--requests", type=int, default=3000, help="calls per measurement (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per figure; the median is shown")
    parser.add_argument(
        "--pairs", type=int, default=40, help=f"runs of {PAIR_REQUESTS} requests with and without each feature"
    )
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's costliest functions")
    args = parser.parse_args(argv)

    from service.heap import fix_mmap_threshold
    from service.state_dir import prepare_state_dir, remove_state_dir

    fix_mmap_threshold()  # the malloc thresholds gunicorn_conf.py sets in the service (the anchor shares them here)
    state_dir = prepare_state_dir()  # before prometheus_client is imported: multiprocess metrics, as in gunicorn
    log_fd = os.open(os.path.join(state_dir, "stdout.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    saved_stdout = os.dup(1)
    try:
        model_dir = args.model_dir or _champion()
        print(f"model {model_dir}; load average {os.getloadavg()[0]:.2f} at start", flush=True)
        os.dup2(log_fd, 1)  # the request log lines (fd 1) go to a file, as the bench's servers' do
        rows, totals = measure(model_dir, args.requests, args.rounds, args.pairs, args.cprofile, saved_stdout)
    finally:
        os.dup2(saved_stdout, 1)
        remove_state_dir()
    print_tables(rows, totals)
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


def _champion() -> Path:
    from bench.bench_service import local_champion

    found = local_champion()
    if found is None:
        raise SystemExit("no local champion: pass --model-dir (a model version directory with model.onnx)")
    return found


class _Quiet:
    """A stand-in for a metric or a log: every call does nothing (a feature switched off for one measurement)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _switch(target: object, name: str, value: object) -> Callable[[], Callable[[], None]]:
    """A switch that sets target.name to value and returns how to put it back."""

    def off() -> Callable[[], None]:
        had = name in vars(target)
        saved = getattr(target, name)
        setattr(target, name, value)
        return lambda: setattr(target, name, saved) if had else delattr(target, name)

    return off


def measure(
    model_dir: Path, n: int, rounds: int, pairs: int, cprofile: bool, out_fd: int
) -> tuple[list[tuple[str, float | None, float, str]], dict[str, float]]:
    import numpy as np
    import orjson

    from service import accounting, metrics
    from service.app import create_app
    from service.caller import caller_key, client_bucket
    from service.predict_route import predictions
    from service.request_parsing import parse_binary, parse_json
    from service.rollout import route

    app = create_app({"MODEL_URI": str(model_dir), "PAGE_ENABLED": "false", "LOG_LEVEL": "INFO"})
    state = app.extensions["fmnist"]
    loaded = state.champion.current
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    raw1, raw64 = images[:1].tobytes(), images.tobytes()
    json1 = ('{"instances": ' + str(images[:1].tolist()) + "}").encode()
    pixels = images[:1].astype(np.float32)
    probabilities = loaded.classifier.predict(pixels)
    predicted = probabilities.argmax(axis=1)
    env = environ("/predict", raw1, "application/octet-stream")
    version = loaded.version
    secret = os.urandom(32)

    anchor, anchor_raw = _anchor_apps(model_dir)
    service1 = caller(app, "/predict", raw1, "application/octet-stream")
    whole: dict[str, Callable[[], None]] = {
        "service, 1 image binary": service1,
        "anchor, 1 image binary": caller(anchor, "/predict_raw", raw1, "application/octet-stream"),
        "anchor without Flask, 1 image binary": caller(anchor_raw, "/predict_raw", raw1, "application/octet-stream"),
        "service, 64 images binary": caller(app, "/predict", raw64, "application/octet-stream"),
        "anchor, 64 images binary": caller(anchor, "/predict_raw", raw64, "application/octet-stream"),
        "service, 1 image JSON": caller(app, "/predict", json1, "application/json"),
        "anchor, 1 image JSON": caller(anchor, "/predict_orjson", json1, "application/json"),
        "inference alone, 1 image": lambda: loaded.classifier.predict(pixels),
    }
    quiet = _Quiet()
    whole["service without drift sampling, 64 images binary"] = _without(
        _switch(state.drift, "observe", quiet.observe), whole["service, 64 images binary"]
    )
    # (feature, switch that turns it off in the whole request or None, the feature alone, what it is)
    features: list[tuple[str, Callable[[], Callable[[], None]] | None, Callable[[], object], str]] = [
        (
            "request id",
            _switch(accounting, "request_id", lambda header: "0123456789abcdef"),
            lambda: accounting.request_id(None),
            "accounting: os.urandom, or the client's id checked",
        ),
        (
            "request metrics",
            _switch(state, "count_request", quiet.count_request),
            lambda: state.count_request("/predict", "POST", 200, 0.0004, version),
            "counter by route/method/status/version + latency histogram (multiprocess files)",
        ),
        (
            "client address (log line)",
            _switch(accounting, "client_ip", lambda *args: "127.0.0.1"),
            lambda: accounting.client_ip(None, "127.0.0.1", 0),
            "ipaddress parse, cached per peer",
        ),
        (
            "request log line",
            _switch(state.request_log, "write", quiet.write),
            lambda: state.request_log.write(
                method="POST",
                path="/predict",
                status=200,
                latency_s=0.0004,
                request_id="0123456789abcdef",
                request_size="784",
                response_size="180",
                remote_ip="127.0.0.1",
                user_agent="wrk",
                trace_header=None,
                quiet=False,
                instances=1,
                model_version=version,
            ),
            "one orjson line, one write(2)",
        ),
        (
            "inference metric",
            _switch(metrics, "INFERENCE", quiet),
            lambda: metrics.INFERENCE.observe(0.0002),
            "histogram observe",
        ),
        (
            "drift sampling",
            _switch(state.drift, "observe", quiet.observe),
            lambda: state.drift.observe(pixels, predicted, lambda: caller_key(env, "", 0)),
            "every class counted, 1 in DRIFT_SAMPLE_EVERY images' features (batched by 8)",
        ),
        (
            "prediction metrics",
            _switch(state, "count_predictions", quiet.count_predictions),
            lambda: state.count_predictions("binary", predicted, loaded.class_names),
            "instances by encoding + predicted class counters",
        ),
        ("version slot lookup", None, lambda: state.champion.current.version, "the one read of the slot"),
        (
            "request parsing",
            None,
            lambda: parse_binary(raw1, state.config.max_instances, {}),
            "784 bytes -> float32 [1,28,28]",
        ),
        (
            "JSON parsing (JSON path)",
            None,
            lambda: parse_json(json1, state.config.max_instances),
            "1 image as nested lists, checked",
        ),
        (
            "response encoding",
            None,
            lambda: orjson.dumps(
                {
                    "predictions": predictions(probabilities, predicted, None, loaded.class_names),
                    "metadata": {"model_version": version},
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
            "predictions list + orjson",
        ),
        (
            "caller identity + keyed route (rollout only)",
            None,
            lambda: route(secret, version, caller_key(env, "", 0)),
            "caller_key + blake2b keyed hash",
        ),
        ("client bucket (drift, sampled)", None, lambda: client_bucket("ip:127.0.0.1"), "blake2b of the caller key"),
    ]
    totals: dict[str, list[float]] = {name: [] for name in whole}
    without: dict[str, list[float]] = {name: [] for name, off, _, _ in features if off is not None}
    alone: dict[str, list[float]] = {name: [] for name, _, _, _ in features}
    for _ in range(rounds):
        for name, function in whole.items():
            totals[name].append(cpu_us(function, n if "64" not in name else max(100, n // 20)))
        for name, _, function, _ in features:
            alone[name].append(cpu_us(function, n))
    # Each feature's cost in the request: many short runs with and without it, alternating, so that the machine's
    # drift (other work on the cores) falls on both sides alike; the median of the paired differences.
    for _ in range(pairs):
        for name, off, _, _ in features:
            if off is None:
                continue
            with_it = cpu_us(service1, PAIR_REQUESTS, warm=20)
            restore = off()
            try:
                without[name].append(with_it - cpu_us(service1, PAIR_REQUESTS, warm=20))
            finally:
                restore()
    if cprofile:
        _print_profile(service1, n, out_fd)
    rows = [
        (
            name,
            None if off is None else statistics.median(without[name]),
            statistics.median(alone[name]),
            why,
        )
        for name, off, _, why in features
    ]
    return rows, {name: statistics.median(values) for name, values in totals.items()}


def _without(off: Callable[[], Callable[[], None]], function: Callable[[], None]) -> Callable[[], None]:
    """`function` with a feature switched off for each call (two attribute writes: nothing beside a request)."""

    def call() -> None:
        restore = off()
        try:
            function()
        finally:
            restore()

    return call


def _anchor_apps(model_dir: Path) -> tuple[Callable, Callable]:
    """The bare anchor's Flask app, and its /predict_raw as a plain WSGI function (what Flask costs it)."""
    os.environ.update(RUNTIME="ort", MODEL=str(model_dir / "model.onnx"), THREADS="1")
    sys.path.insert(0, str(ANCHOR_DIR))
    import bare_app  # type: ignore[import-not-found]
    import numpy as np
    import orjson

    def predict_raw(environ: dict, start_response: Callable) -> list[bytes]:
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        pixels = np.frombuffer(data, np.uint8).reshape(-1, 28, 28).astype(np.float32)
        body = orjson.dumps(bare_app._body(bare_app.infer(pixels)))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return bare_app.app, predict_raw


def _print_profile(function: Callable[[], None], n: int, out_fd: int) -> None:
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        function()
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
    os.write(out_fd, text.getvalue().encode())


def print_tables(rows: list[tuple[str, float | None, float, str]], totals: dict[str, float]) -> None:
    print("\n== whole request, in-process (CPU us per request; gunicorn's socket and HTTP parse not included)")
    for kind in ("1 image binary", "64 images binary", "1 image JSON"):
        ours, theirs = totals[f"service, {kind}"], totals[f"anchor, {kind}"]
        print(f"{kind:18s} service {ours:8.0f}   anchor {theirs:8.0f}   ratio {ours / theirs:5.2f}")
    no_drift = totals["service without drift sampling, 64 images binary"]
    theirs = totals["anchor, 64 images binary"]
    print(f"{'64, drift off':18s} service {no_drift:8.0f}   anchor {theirs:8.0f}   ratio {no_drift / theirs:5.2f}")
    print(f"drift sampling in a 64-image request: {totals['service, 64 images binary'] - no_drift:.0f} us")
    inference = totals["inference alone, 1 image"]
    print(f"{'inference alone':18s} {inference:8.0f} (1 image)")
    ours, theirs = totals["service, 1 image binary"] - inference, totals["anchor, 1 image binary"] - inference
    print(f"around inference, 1 image binary: service {ours:.0f} us, anchor {theirs:.0f} us")
    flask = totals["anchor, 1 image binary"] - totals["anchor without Flask, 1 image binary"]
    print(f"Flask + werkzeug in the anchor (its /predict_raw as a plain WSGI function): {flask:.0f} us")
    print("\n== per-feature cost, 1-image binary request (CPU us)")
    print("   in the request: median over alternating runs of the whole request minus the same with that feature")
    print("   switched off (cold caches, as served); alone: the feature called in a loop (warm caches)")
    print(f"{'feature':46s} {'in the request':>14s} {'alone':>6s}  what")
    for name, in_request, cost, why in rows:
        shown = "" if in_request is None else f"{in_request:.1f}"
        print(f"{name:46s} {shown:>14s} {cost:6.1f}  {why}")


if __name__ == "__main__":
    sys.exit(main())
