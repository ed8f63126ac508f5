"""A challenger is never promoted on evidence that was not gathered: a canary whose answers were never compared
with the champion's waits, however many requests it served."""

from types import SimpleNamespace

from service.rollout import Rollout, build_report, route
from tests.service.test_rollout import _config, _counters, _loaded, _pixels


def test_a_canary_that_compared_nothing_waits_for_agreement(model_dir):
    champion, challenger = _loaded(model_dir, "ev-cnn"), _loaded(model_dir, "ev-twin")  # versions of their own
    config = _config("canary", percent=50, every=10**9, min_requests=3, max_latency_ratio=100.0)
    rollout = Rollout(config, SimpleNamespace(waiting_reason=None, current=challenger))
    keys = [k for k in (f"client-{i}" for i in range(60)) if route(config.routing_secret, "ev-twin", k).in_canary(50)]
    keys = keys[:6]
    for key in keys:
        assert rollout.predict(_pixels(2, 9), champion, key).model is challenger
    report = build_report(config, _counters(), "ev-cnn", "ev-twin")
    assert report["challenger"]["answered"] == len(keys) >= config.thresholds.min_requests
    assert report["agreement"] == {
        "agreed": 0,
        "compared": 0,
        "rate": None,
        "interval_95": [0.0, 1.0],
        "requests_credited": None,
    }
    assert report["verdict"] == {
        "decision": "wait",
        "reasons": ["no agreement measured between champion and challenger"],
        "codes": ["agreement_unmeasured"],
    }
