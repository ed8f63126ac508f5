"""/metrics counts exactly what was served: scrape before and after a known mix of requests and compare the
deltas per route/method/status, per error reason, per encoding and per predicted class, in-process and on a
fresh two-worker gunicorn server (whose counters are summed across the workers' multiprocess files).

The oracle is independent of the counters: the replies themselves (their status, error reason, predictions)."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import counts_per_worker, start_service, stop_service
from tests.service.model_factory import generated_images

OCTET = {"Content-Type": "application/octet-stream"}
JSON = {"Content-Type": "application/json"}
COUNTED = (
    "fmnist_http_requests",
    "fmnist_request_errors",
    "fmnist_instances",
    "fmnist_predicted_class",
    "fmnist_http_request_duration_seconds",
    "fmnist_inference_duration_seconds",
)


def samples(text: str) -> Counter:
    """{(sample name, sorted labels): value} for the counted families (counters' _total, histograms' _count)."""
    out: Counter = Counter()
    for family in text_string_to_metric_families(text):
        if family.name not in COUNTED:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_total", "_count")):
                out[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return out


def delta(before: str, after: str) -> dict:
    changed = samples(after)
    changed.subtract(samples(before))
    return {key: value for key, value in changed.items() if value}


def requests_key(method: str, route: str, status, version: str) -> tuple:
    labels = (("method", method), ("model_version", version), ("route", route), ("status", str(status)))
    return ("fmnist_http_requests_total", labels)


def expected_deltas(
    replies: list[tuple[str, str, int, dict | None, str]], class_names: list[str], version: str = "test-v1"
) -> dict:
    """What /metrics must have gained from these replies: (route, method, status, JSON body, encoding) each,
    plus the one scrape taken before them (counted once its reply is out), all answered by `version`."""
    want: Counter = Counter()
    want[requests_key("GET", "/metrics", 200, version)] += 1
    want[("fmnist_http_request_duration_seconds_count", (("route", "/metrics"),))] += 1
    for route, method, status, body, encoding in replies:
        want[requests_key(method, route, status, version)] += 1
        want[("fmnist_http_request_duration_seconds_count", (("route", route),))] += 1
        if status >= 400:
            want[("fmnist_request_errors_total", (("reason", body["error"]),))] += 1
        elif route == "/predict":
            predictions = body["predictions"]
            want[("fmnist_instances_total", (("encoding", encoding),))] += len(predictions)
            want[("fmnist_inference_duration_seconds_count", ())] += 1
            for item in predictions:
                want[("fmnist_predicted_class_total", (("class_name", class_names[item["class_id"]]),))] += 1
    return dict(want)


def request_mix(images: np.ndarray) -> list[tuple[str, str, bytes | None, dict, str]]:
    """(route, method, body, headers, encoding): batches and single images in every encoding, and bad requests."""
    from service.images import encode_png

    mix = []
    for start in range(0, 40, 8):
        mix.append(("/predict", "POST", images[start : start + 8].tobytes(), OCTET, "binary"))
    mix.append(("/predict", "POST", images[40:41].tobytes(), OCTET, "binary"))
    mix.append(("/predict", "POST", json.dumps({"instances": images[41:53].tolist()}).encode(), JSON, "json"))
    mix.append(("/predict", "POST", json.dumps({"instances": [images[53].tolist()]}).encode(), JSON, "json"))
    b64 = [{"b64": encode_png(image)} for image in images[54:57]]
    mix.append(("/predict", "POST", json.dumps({"instances": b64}).encode(), JSON, "b64"))
    mix.append(("/predict", "POST", json.dumps({"instances": []}).encode(), JSON, "json"))  # empty_instances
    mix.append(("/predict", "POST", json.dumps({"rows": []}).encode(), JSON, "json"))  # missing_instances
    mix.append(("/predict", "POST", json.dumps({"instances": [[0] * 784], "parameters": {"x": 1}}).encode(), JSON, ""))
    mix.append(("/predict", "POST", b"\x00" * 100, OCTET, "binary"))  # not a whole number of images
    mix.append(("/predict", "GET", None, {}, ""))  # method not allowed
    mix.append(("unmatched", "GET", None, {}, ""))  # no such route, counted as 'unmatched'
    mix.append(("/health", "GET", None, {}, ""))
    mix.append(("/v1/model", "GET", None, {}, ""))
    return mix


def assert_exact(before: str, after: str, replies: list, class_names: list[str]) -> None:
    got, want = delta(before, after), expected_deltas(replies, class_names)
    assert got == want, {
        "missing or wrong": {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v},
        "unexpected": {k: v for k, v in got.items() if k not in want},
    }
    reasons = {key for key in want if key[0] == "fmnist_request_errors_total"}
    classes = {key for key in want if key[0] == "fmnist_predicted_class_total"}
    encodings = {key for key in want if key[0] == "fmnist_instances_total"}
    assert len(reasons) >= 4 and len(classes) >= 5 and len(encodings) == 3  # the mix exercises what it claims


# ---- in-process --------------------------------------------------------------------------------------------------


def test_in_process_metrics_count_exactly_the_requests_served(make_app):
    app = make_app(MAX_INSTANCES="64")
    client = app.test_client()
    class_names = client.get("/v1/model").get_json()["class_names"]
    images, _ = generated_images(60, seed=41)
    before = client.get("/metrics").get_data(as_text=True)
    replies = []
    for route, method, body, headers, encoding in request_mix(images):
        path = "/no/such/route" if route == "unmatched" else route
        reply = client.open(path, method=method, data=body, headers=headers)
        replies.append((route, method, reply.status_code, reply.get_json(silent=True), encoding))
    after = client.get("/metrics").get_data(as_text=True)
    assert_exact(before, after, replies, class_names)


# ---- two gunicorn workers ----------------------------------------------------------------------------------------


@pytest.fixture
def fresh_server(tmp_path, models_root):
    """A server started for this test alone: no request of an earlier test is in its counters or state."""
    server = start_service(tmp_path, MODEL_URI=f"{models_root}@champion", WORKERS="2", MAX_INSTANCES="64")
    yield server
    assert stop_service(server) == 0


def test_two_workers_count_exactly_the_requests_both_served(fresh_server):
    class_names = fresh_server.json("GET", "/v1/model")[1]["class_names"]
    images, _ = generated_images(60, seed=42)
    mix = request_mix(images) * 3  # many concurrent connections: both sync workers take some
    before = fresh_server.request("GET", "/metrics")[2].decode()

    def send(item):
        route, method, body, headers, encoding = item
        path = "/no/such/route" if route == "unmatched" else route
        status, reply_headers, data = fresh_server.request(method, path, body, headers)
        is_json = reply_headers.get("Content-Type", "").startswith("application/json")
        return route, method, status, json.loads(data) if is_json else None, encoding

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(send, mix))
    after = fresh_server.request("GET", "/metrics")[2].decode()
    assert_exact(before, after, replies, class_names)

    state_dir = fresh_server.state_dir()
    served = counts_per_worker(state_dir, "fmnist_http_requests_total", route="/predict", status="200")
    workers = set(fresh_server.worker_pids())
    assert len(workers) == 2 and all(served.get(pid, 0) > 0 for pid in workers), served  # both served some
    assert all(count == 0 for pid, count in served.items() if pid not in workers), served  # the master serves none
    assert sum(served.values()) == sum(1 for r in replies if r[0] == "/predict" and r[2] == 200)
