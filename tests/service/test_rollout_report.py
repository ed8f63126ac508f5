"""/monitoring/rollout in process, exactly: a canary's document for the operator (every configured threshold, the
challenger's reference, the verdict's reasons) and for anyone else (reason codes only), the figures of both
versions from the requests this test sent, and the quantiles the report reads from the latency histogram."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contracts.rollout import Thresholds
from service.rollout import build_report, public_report, quantile, route, version_report
from tests.service.conftest import ADMIN, ADMIN_ENV
from tests.service.model_factory import local_registry, make_version, register

SECRET = "report-routing-secret-0123456789abcdef"
CONFIGURED = {
    "ROLLOUT_MIN_REQUESTS": "7",
    "ROLLOUT_MIN_AGREEMENT": "0.91",
    "ROLLOUT_MAX_LATENCY_RATIO": "3.5",
    "ROLLOUT_MAX_ERROR_RATE": "0.02",
    "ROLLOUT_MIN_CLIENTS": "2",
    "ROLLOUT_MAX_CLIENT_REQUESTS": "40",
    "ROLLOUT_MIN_LABELS": "90",
    "ROLLOUT_MIN_LABEL_POSTERS": "4",
    "ROLLOUT_MAX_POSTER_LABELS": "12",
    "ROLLOUT_MAX_ACCURACY_DROP": "0.03",
}


@pytest.fixture
def canary_app(tmp_path, model_dir, linear_model_dir):
    """Champion rp-champion (the test CNN), challenger rp-challenger (the linear model) in a 50 % canary: versions
    of their own, so the process-wide counters hold only this test's requests."""
    return _canary_app(tmp_path, model_dir, linear_model_dir, "rp")


def _canary_app(tmp_path, model_dir, linear_model_dir, prefix: str, **env_changes: str):
    from service.app import create_app

    registry = local_registry(tmp_path / "models")
    champion = make_version(model_dir, tmp_path / "build" / "champion", f"{prefix}-champion")
    challenger = make_version(linear_model_dir, tmp_path / "build" / "challenger", f"{prefix}-challenger")
    register(registry, champion[0], f"{prefix}-champion", champion[1])
    register(registry, challenger[0], f"{prefix}-challenger", challenger[1], promote=False)  # the candidate alias
    env = {
        "MODEL_URI": f"{registry.root}@champion",
        "CHALLENGER": "candidate",
        "ROLLOUT_MODE": "canary",
        "CANARY_PERCENT": "50",
        "SHADOW_SAMPLE_EVERY": "1",
        "ROUTING_SECRET": SECRET,
        "FEEDBACK_ROWS": "off",
        **CONFIGURED,
        **ADMIN_ENV,
        **env_changes,
    }
    return create_app(env)


def test_a_canary_routes_by_the_identity_cloud_run_verified_when_configured(tmp_path, model_dir, linear_model_dir):
    """CALLER_IDENTITY=cloud_run_iam: the route is the keyed hash of the ID token's email, not of the address."""
    import base64
    import json

    app = _canary_app(tmp_path, model_dir, linear_model_dir, "rp-id", CALLER_IDENTITY="cloud_run_iam")
    address = "ip:203.0.113.60"
    on_address = route(SECRET.encode(), "rp-id-challenger", address).in_canary(50)
    email = next(
        f"scorer-{i}@example.iam"
        for i in range(100)
        if route(SECRET.encode(), "rp-id-challenger", f"id:scorer-{i}@example.iam").in_canary(50) != on_address
    )
    claims = base64.urlsafe_b64encode(json.dumps({"email": email}).encode()).decode().rstrip("=")
    reply = app.test_client().post(
        "/predict",
        data=np.zeros((1, 784), np.uint8).tobytes(),
        content_type="application/octet-stream",
        headers={"X-Serverless-Authorization": f"Bearer eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"},
        environ_base={"REMOTE_ADDR": address[3:]},
    )
    assert reply.status_code == 200, reply.get_json()
    expected = "rp-id-champion" if on_address else "rp-id-challenger"  # the identity's side, not the address's
    assert reply.get_json()["metadata"]["model_version"] == expected


def test_the_canary_report_for_the_operator_and_for_anyone(canary_app):
    client = canary_app.test_client()
    callers = [f"10.1.0.{i}" for i in range(12)]
    routes = {ip: route(SECRET.encode(), "rp-challenger", f"ip:{ip}") for ip in callers}
    on_canary = [ip for ip in callers if routes[ip].in_canary(50)]
    assert 0 < len(on_canary) < len(callers), "the test needs callers on both sides"
    body = np.zeros((2, 784), np.uint8).tobytes()
    for ip in callers:
        reply = client.post(
            "/predict", data=body, content_type="application/octet-stream", environ_base={"REMOTE_ADDR": ip}
        )
        assert reply.status_code == 200, reply.get_data(as_text=True)
        # the reply names the version that answered it: the challenger for a canary client
        answered_by = "rp-challenger" if ip in on_canary else "rp-champion"
        assert reply.get_json()["metadata"]["model_version"] == answered_by

    full = client.get("/monitoring/rollout", headers=ADMIN).get_json()
    assert (full["mode"], full["challenger_reference"], full["sample_every"], full["canary_percent"]) == (
        "canary",
        "candidate",
        1,
        50.0,
    )
    assert full["thresholds"] == {
        "min_requests": 7,
        "min_clients": 2,
        "max_client_requests": 40,
        "min_agreement": 0.91,
        "max_latency_ratio": 3.5,
        "max_error_rate": 0.02,
        "min_labels": 90,
        "min_label_posters": 4,
        "max_poster_labels": 12,
        "max_accuracy_drop": 0.03,
    }
    champion, challenger = full["champion"], full["challenger"]
    n = len(on_canary)
    assert (champion["version"], champion["role"]) == ("rp-champion", "champion")
    assert (challenger["version"], challenger["role"]) == ("rp-challenger", "challenger")
    assert champion["answered"] == len(callers) - n and challenger["answered"] == n
    assert champion["requests"] == len(callers)  # every canary request is also scored by the champion (every 1)
    assert challenger["requests"] == n and challenger["errors"] == 0 and challenger["error_rate"] == 0.0
    canary_buckets = {routes[ip].bucket for ip in on_canary}
    all_buckets = {routes[ip].bucket for ip in callers}
    assert challenger["clients"] == len(canary_buckets) and champion["clients"] == len(all_buckets)
    assert sum(challenger["classes"].values()) == 2 * n and sum(champion["classes"].values()) == 2 * len(callers)
    assert full["agreement"]["compared"] == 2 * n and full["evidence"]["clients"] == len(canary_buckets)
    assert full["evidence"]["requests_credited"] == n and full["evidence"]["errors_credited"] == 0
    # each model's paired inference seconds were recorded under this pair and each caller's bucket (a ratio
    # exists only when the per-bucket rows of both roles are found), and latency is per image, in milliseconds
    assert full["evidence"]["latency_ratio"] is not None and full["evidence"]["latency_ratio"] > 0
    for figures in (champion, challenger):
        assert 0 < figures["inference_p50_ms"] <= figures["inference_p99_ms"] < 60_000
    assert set(full["accuracy"]) == {"champion", "challenger"}
    assert full["accuracy"]["challenger"] == {"labelled": 0, "correct": 0, "posters": 0}
    assert full["verdict"]["reasons"] and len(full["verdict"]["reasons"]) == len(full["verdict"]["codes"])

    public = client.get("/monitoring/rollout").get_json()
    assert "challenger_reference" not in public
    assert public["verdict"] == {"decision": full["verdict"]["decision"], "codes": full["verdict"]["codes"]}
    assert {k: v for k, v in public.items() if k != "verdict"} == {
        k: v for k, v in full.items() if k not in ("verdict", "challenger_reference")
    }


def test_a_report_without_a_champion_or_in_shadow_says_so():
    from service.config import RolloutConfig

    config = RolloutConfig("candidate", "/m@candidate", "shadow", 10.0, 3, Thresholds(), b"x")
    report = build_report(config, {}, None, "rp-x", None)
    assert "canary_percent" not in report and report["champion"] is None
    assert report["challenger"]["version"] == "rp-x" and report["challenger"]["requests"] == 0
    assert report["verdict"] == {"decision": "wait", "codes": ["no_champion"], "reasons": ["no champion model loaded"]}
    assert report["agreement"] is None and report["evidence"] is None and "accuracy" not in report
    waiting = build_report(config, {}, "rp-y", None, "")
    assert waiting["verdict"]["reasons"] == ["no challenger model loaded"]  # an empty status adds nothing
    assert public_report(report)["verdict"] == {"decision": "wait", "codes": ["no_champion"]}


def test_quantiles_are_interpolated_within_their_bucket_like_prometheus():
    buckets = [(0.001, 0.0), (0.002, 10.0), (0.004, 30.0), (math.inf, 40.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.002 + 0.002 * (20 - 10) / 20)
    assert quantile(0.25, buckets) == pytest.approx(0.001 + 0.001 * 10 / 10)
    assert quantile(0.99, buckets) == 0.004  # in the +Inf bucket: the largest finite bound
    assert quantile(0.0, buckets) == 0.001  # rank 0 meets the first bucket, empty below: its bound
    assert quantile(0.5, []) is None and quantile(0.5, [(0.001, 0.0), (math.inf, 0.0)]) is None
    assert quantile(1.5, [(0.001, 1.0), (0.002, 2.0)]) == 0.002  # past the last bucket: its bound
    assert quantile(0.5, [(0.001, 1.0), (math.inf, 1.0)]) == 0.0005  # one observation, from 0 to its bound
    assert quantile(0.5, [(0.001, 0.0), (0.002, 0.0), (math.inf, 4.0)]) == 0.002  # the total is the last count
    # the rank falls on a bucket's count: that bucket's bound, not the next non-empty bucket's
    assert quantile(0.5, [(0.001, 1.0), (0.002, 1.0), (math.inf, 2.0)]) == 0.001


def test_a_version_report_reads_its_own_rows_only():
    counters = {
        "fmnist_rollout_requests_total": {
            ("a", "champion", "01"): 3.0,
            ("a", "champion", "02"): 0.0,
            ("b", "champion", "01"): 9.0,
        },
        "fmnist_rollout_errors_total": {("a", "champion", "01"): 1.0, ("a", "challenger", "01"): 5.0},
        "fmnist_rollout_answered_total": {("a", "champion"): 2.0},
        "fmnist_rollout_predicted_class_total": {("Bag", "a", "champion"): 2.0, ("Coat", "a", "champion"): 0.0},
        "fmnist_rollout_inference_duration_seconds_bucket": {
            ("a", "champion", "0.001"): 1.0,
            ("a", "champion", "+Inf"): 3.0,
            ("b", "champion", "0.001"): 9.0,
        },
    }
    assert version_report(counters, "a", "champion") == {
        "version": "a",
        "role": "champion",
        "requests": 3,
        "clients": 1,
        "answered": 2,
        "errors": 1,
        "error_rate": 1 / 3,
        "inference_p50_ms": 1.0,
        "inference_p99_ms": 1.0,
        "classes": {"Bag": 2},
    }


def test_a_version_with_no_rows_reports_zeros_and_latency_in_milliseconds_to_four_places():
    assert version_report({}, "a", "challenger") == {
        "version": "a",
        "role": "challenger",
        "requests": 0,
        "clients": 0,
        "answered": 0,
        "errors": 0,
        "error_rate": 0.0,
        "inference_p50_ms": None,
        "inference_p99_ms": None,
        "classes": {},
    }
    latency = {("a", "challenger", "0.0001"): 1.0, ("a", "challenger", "0.0002"): 4.0, ("a", "challenger", "+Inf"): 4.0}
    figures = version_report({"fmnist_rollout_inference_duration_seconds_bucket": latency}, "a", "challenger")
    # p50: 0.1 ms + 0.1 ms x (2 - 1) / 3; p99: 0.1 ms + 0.1 ms x (3.96 - 1) / 3
    assert (figures["inference_p50_ms"], figures["inference_p99_ms"]) == (0.1333, 0.1987)
