"""Champion/challenger in one worker: canary routing, shadow scoring, agreement and per-version counters, exact.

Two real ONNX models (the session's tiny CNN and a random linear classifier that disagrees with it); the oracle is
each model's own prediction, computed apart from the rollout code."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import REGISTRY

from contracts.rollout import Thresholds
from service.config import RolloutConfig
from service.rollout import Rollout, build_report, public_report, read_counters, route
from service.runtime import OnnxClassifier
from tests.service.model_factory import generated_images


@dataclass(frozen=True)
class Loaded:
    version: str
    class_names: list[str]
    classifier: OnnxClassifier


def _loaded(directory, version: str) -> Loaded:
    import json

    names = json.loads((directory / "metadata.json").read_text())["class_names"]
    return Loaded(version, names, OnnxClassifier(str(directory / "model.onnx"), "pixels"))


@pytest.fixture(scope="module")
def cnn(model_dir):
    return _loaded(model_dir, "rt-cnn")


@pytest.fixture(scope="module")
def linear(linear_model_dir):
    return _loaded(linear_model_dir, "rt-linear")


SECRET = b"test-routing-secret-0123456789"


def in_canary(key: str, salt: str, percent: float, secret: bytes = SECRET) -> bool:
    return route(secret, salt, key).in_canary(percent)


def _config(mode="shadow", percent=10.0, every=1, **thresholds) -> RolloutConfig:
    thresholds = {"min_clients": 1, "max_client_requests": 10**9, **thresholds}
    return RolloutConfig("candidate", "/m@candidate", mode, percent, every, Thresholds(**thresholds), SECRET)


def _pixels(n: int, seed: int) -> np.ndarray:
    return generated_images(n, seed)[0].astype(np.float32)


def _counters():
    return read_counters(REGISTRY.collect())


_PER_CLIENT = {
    "fmnist_rollout_requests_total",
    "fmnist_rollout_errors_total",
    "fmnist_rollout_paired_requests_total",
    "fmnist_rollout_paired_agreement_total",
    "fmnist_rollout_paired_inference_seconds_total",
}


def _delta(before, after):
    """Changes per sample and label values; per-client series summed over their client buckets."""
    out = {}
    for name, table in after.items():
        for key, value in table.items():
            change = value - before.get(name, {}).get(key, 0.0)
            if change and not name.endswith("_bucket"):
                short = key[:-1] if name in _PER_CLIENT else key
                out[(name, short)] = out.get((name, short), 0.0) + change
    return out


def test_canary_hash_is_stable_and_splits_by_the_percentage():
    keys = [f"client-{i}" for i in range(20_000)]
    chosen = [in_canary(k, "v2", 10) for k in keys]
    assert chosen == [in_canary(k, "v2", 10) for k in keys]  # one client, one model
    assert abs(sum(chosen) / len(keys) - 0.10) < 0.01
    assert abs(sum(in_canary(k, "v2", 37.5) for k in keys) / len(keys) - 0.375) < 0.015
    assert not any(in_canary(k, "v2", 0) for k in keys) and all(in_canary(k, "v2", 100) for k in keys)
    other = [in_canary(k, "v3", 10) for k in keys]
    assert other != chosen  # a new challenger draws a new sample of clients
    ten = {k for k, c in zip(keys, chosen, strict=True) if c}
    twenty = {k for k in keys if in_canary(k, "v2", 20)}
    assert ten < twenty  # raising the percentage keeps the clients already on the challenger
    other_secret = [in_canary(k, "v2", 10, b"another-secret-0123456789") for k in keys]
    assert other_secret != chosen  # without the secret the split cannot be computed


def test_client_buckets_spread_and_stay_put():
    buckets = [route(SECRET, "v2", f"ip:10.0.{i // 256}.{i % 256}").bucket for i in range(2000)]
    assert len(set(buckets)) == 64 and buckets[5] == route(SECRET, "v2", "ip:10.0.0.5").bucket


def test_shadow_answers_with_the_champion_and_counts_agreement_exactly(cnn, linear):
    rollout = Rollout(_config("shadow"), SimpleNamespace(waiting_reason=None, current=linear))
    before = _counters()
    batches = [_pixels(n, seed) for n, seed in ((1, 1), (7, 2), (40, 3), (64, 4))]
    agreed = compared = 0
    classes = {"champion": np.zeros(10, int), "challenger": np.zeros(10, int)}
    for pixels in batches:
        answer = rollout.predict(pixels, cnn, "anyone")
        ours, theirs = cnn.classifier.predict(pixels), linear.classifier.predict(pixels)
        assert answer.model is cnn
        np.testing.assert_array_equal(answer.probabilities, ours)  # never the challenger's answer
        agreed += int((ours.argmax(1) == theirs.argmax(1)).sum())
        compared += len(pixels)
        classes["champion"] += np.bincount(ours.argmax(1), minlength=10)
        classes["challenger"] += np.bincount(theirs.argmax(1), minlength=10)
    assert 0 < agreed < compared, "the two models must partly disagree for this test to mean something"
    got = _delta(before, _counters())
    want = {
        ("fmnist_rollout_requests_total", ("rt-cnn", "champion")): 4,
        ("fmnist_rollout_answered_total", ("rt-cnn", "champion")): 4,
        ("fmnist_rollout_requests_total", ("rt-linear", "challenger")): 4,
        ("fmnist_rollout_compared_total", ("rt-cnn", "rt-linear")): compared,
        ("fmnist_rollout_agreed_total", ("rt-cnn", "rt-linear")): agreed,
        ("fmnist_rollout_inference_duration_seconds_count", ("rt-cnn", "champion")): 4,
        ("fmnist_rollout_inference_duration_seconds_count", ("rt-linear", "challenger")): 4,
    }
    for role, version in (("champion", "rt-cnn"), ("challenger", "rt-linear")):
        for class_id in np.flatnonzero(classes[role]):
            name = cnn.class_names[class_id]
            want[("fmnist_rollout_predicted_class_total", (name, version, role))] = classes[role][class_id]
    want[("fmnist_rollout_paired_requests_total", ("rt-cnn", "rt-linear"))] = 4
    paired_agreement = got.pop(("fmnist_rollout_paired_agreement_total", ("rt-cnn", "rt-linear")))
    assert paired_agreement == pytest.approx(
        sum((cnn.classifier.predict(b).argmax(1) == linear.classifier.predict(b).argmax(1)).mean() for b in batches)
    )  # agreement per request: each request's share of agreeing images
    seconds = {k[1][2]: v for k, v in got.items() if k[0] == "fmnist_rollout_paired_inference_seconds_total"}
    assert set(seconds) == {"champion", "challenger"} and min(seconds.values()) > 0
    assert {k: v for k, v in got.items() if not k[0].endswith(("_sum", "seconds_total"))} == want


def test_shadow_sampling_scores_every_kth_request(cnn, linear):
    rollout = Rollout(_config("shadow", every=3), SimpleNamespace(waiting_reason=None, current=linear))
    before = _counters()
    for i in range(10):
        rollout.predict(_pixels(2, 10 + i), cnn, "anyone")
    got = _delta(before, _counters())
    assert got[("fmnist_rollout_requests_total", ("rt-linear", "challenger"))] == 3
    assert got[("fmnist_rollout_compared_total", ("rt-cnn", "rt-linear"))] == 6
    assert got[("fmnist_rollout_answered_total", ("rt-cnn", "champion"))] == 10


def test_canary_routes_by_client_and_measures_agreement_on_a_sample(cnn, linear):
    rollout = Rollout(_config("canary", percent=50, every=2), SimpleNamespace(waiting_reason=None, current=linear))
    keys = [f"c{i}" for i in range(40)]
    canary = [k for k in keys if in_canary(k, "rt-linear", 50)]
    before = _counters()
    pixels = _pixels(3, 5)
    for key in keys:
        answer = rollout.predict(pixels, cnn, key)
        expected = linear if key in canary else cnn
        assert answer.model is expected
        np.testing.assert_array_equal(answer.probabilities, expected.classifier.predict(pixels))
    got = _delta(before, _counters())
    n = len(canary)
    assert 5 < n < 35
    assert got[("fmnist_rollout_answered_total", ("rt-linear", "challenger"))] == n
    assert got[("fmnist_rollout_answered_total", ("rt-cnn", "champion"))] == len(keys) - n
    assert got[("fmnist_rollout_requests_total", ("rt-cnn", "champion"))] == len(keys) - n + n // 2
    assert got[("fmnist_rollout_compared_total", ("rt-cnn", "rt-linear"))] == 3 * (n // 2)


class _Broken:
    def predict(self, pixels):
        raise RuntimeError("the challenger's session is gone")


def test_a_failing_challenger_is_counted_and_the_champion_answers(cnn):
    broken = Loaded("rt-broken", cnn.class_names, _Broken())  # type: ignore[arg-type]
    before = _counters()
    pixels = _pixels(2, 6)
    for mode in ("shadow", "canary"):
        rollout = Rollout(_config(mode, percent=100), SimpleNamespace(waiting_reason=None, current=broken))
        answer = rollout.predict(pixels, cnn, "k")
        assert answer.model is cnn
        np.testing.assert_array_equal(answer.probabilities, cnn.classifier.predict(pixels))
    got = _delta(before, _counters())
    assert got[("fmnist_rollout_errors_total", ("rt-broken", "challenger"))] == 2
    assert ("fmnist_rollout_compared_total", ("rt-cnn", "rt-broken")) not in got


def test_no_challenger_loaded_yet_means_the_champion_alone_and_a_wait(cnn):
    rollout = Rollout(_config(), SimpleNamespace(waiting_reason=None, current=None))
    before = _counters()
    assert rollout.predict(_pixels(1, 7), cnn, "k").model is cnn
    assert _delta(before, _counters()) == {}
    report = build_report(_config(), _counters(), "rt-cnn", None, "the registry has no 'candidate' alias")
    assert report["verdict"]["decision"] == "wait"
    assert "no challenger model loaded: the registry has no 'candidate' alias" in report["verdict"]["reasons"]
    public = public_report(report)
    assert public["verdict"] == {"decision": "wait", "codes": ["no_challenger"]}  # no alias, no path
    assert "challenger_reference" not in public and public["thresholds"] == report["thresholds"]


def test_verdict_waits_for_enough_clients_then_promotes_an_agreeing_challenger(cnn):
    champion = Loaded("rt-cnn-p", cnn.class_names, cnn.classifier)  # versions of its own: counters are per process
    twin = Loaded("rt-twin", cnn.class_names, cnn.classifier)  # the same model under another version
    config = _config(min_requests=200, min_clients=10, max_client_requests=20, max_latency_ratio=100.0)
    rollout = Rollout(config, SimpleNamespace(waiting_reason=None, current=twin))
    pixels = _pixels(1, 8)
    for _ in range(250):  # one client, many requests: capped at 20, and one client is not enough
        rollout.predict(pixels, champion, "ip:203.0.113.7")
    report = build_report(config, _counters(), "rt-cnn-p", "rt-twin")
    assert report["verdict"]["decision"] == "wait", report["verdict"]
    assert report["evidence"]["clients"] == 1 and report["evidence"]["requests_credited"] == 20
    assert report["challenger"]["requests"] == 250  # what was served is still shown in full
    reasons = " ".join(report["verdict"]["reasons"])
    assert "1 of the 10 distinct clients" in reasons and "20 of the 200 requests" in reasons
    callers = [f"ip:198.51.100.{i}" for i in range(15)]
    buckets = {route(SECRET, "rt-twin", c).bucket for c in [*callers, "ip:203.0.113.7"]}
    assert len(buckets) >= 10, "the test needs at least 10 distinct client buckets"
    for caller in callers:
        for i in range(20):
            rollout.predict(_pixels(4, 40 + i), champion, caller)
    report = build_report(config, _counters(), "rt-cnn-p", "rt-twin")
    assert report["verdict"]["decision"] == "promote", report["verdict"]
    assert report["evidence"]["clients"] == len(buckets)
    per_bucket: dict[str, int] = {}
    for caller in [*callers, *["ip:203.0.113.7"] * 12]:  # 250 = 12 x 20 + 10: the lone client saturates its cap
        key = route(SECRET, "rt-twin", caller).bucket
        per_bucket[key] = per_bucket.get(key, 0) + 20
    credited = sum(min(20, count) for count in per_bucket.values())
    assert report["evidence"]["requests_credited"] == credited
    assert report["agreement"]["rate"] == 1.0 and report["agreement"]["interval_95"][0] > 0.98
    assert report["agreement"]["compared"] == 250 + 15 * 20 * 4  # images, shown in full
    assert report["champion"]["inference_p99_ms"] > 0


def test_verdict_rolls_back_a_disagreeing_challenger(cnn, linear):
    config = _config(min_requests=1000)
    disagreeing = Loaded("rt-linear-2", linear.class_names, linear.classifier)
    rollout = Rollout(config, SimpleNamespace(waiting_reason=None, current=disagreeing))
    for i in range(3):
        rollout.predict(_pixels(64, 30 + i), cnn, "k")
    report = build_report(config, _counters(), "rt-cnn", "rt-linear-2")
    assert report["verdict"]["decision"] == "rollback", report
    assert "agreement with the champion" in report["verdict"]["reasons"][0]
    low, high = report["agreement"]["interval_95"]
    assert low <= report["agreement"]["rate"] <= high < 0.98
