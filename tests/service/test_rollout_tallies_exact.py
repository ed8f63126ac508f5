"""The canary's evidence per client bucket, exactly, from counters written by hand: which rows each tally reads
(the challenger's own requests and errors, the pairs of this champion and this challenger, each model's paired
seconds), what a bucket missing from one counter gets, and the report's figures built from the capped sums
(issue 27: the service-rollout group's first run left per-client errors, paired seconds and the report's
rounding without a test that reads them in process)."""

from __future__ import annotations

import dataclasses

import pytest

from contracts.rollout import ClientTally, Thresholds
from service.config import RolloutConfig
from service.rollout import build_report, client_tallies

CHAMPION, CHALLENGER = "v-champ", "v-chall"


def _counters() -> dict[str, dict[tuple[str, ...], float]]:
    """Buckets a (over the cap), b (requests only), c (paired only, no agreement and no seconds recorded), and rows
    of other versions and roles that no tally may read."""
    return {
        "fmnist_rollout_requests_total": {
            (CHALLENGER, "challenger", "a"): 9.0,
            (CHALLENGER, "challenger", "b"): 4.0,
            (CHAMPION, "champion", "a"): 99.0,  # the champion's own traffic
            ("v-other", "challenger", "a"): 50.0,  # another challenger
        },
        "fmnist_rollout_errors_total": {
            (CHALLENGER, "challenger", "a"): 2.0,
            (CHAMPION, "champion", "b"): 7.0,
        },
        "fmnist_rollout_paired_requests_total": {
            (CHAMPION, CHALLENGER, "a"): 6.0,
            (CHAMPION, CHALLENGER, "c"): 3.0,
            ("v-old", CHALLENGER, "a"): 100.0,  # pairs with an earlier champion
        },
        "fmnist_rollout_paired_agreement_total": {(CHAMPION, CHALLENGER, "a"): 5.5},
        "fmnist_rollout_paired_inference_seconds_total": {
            (CHAMPION, CHALLENGER, "challenger", "a"): 0.7,
            (CHAMPION, CHALLENGER, "champion", "a"): 0.3,
            ("v-old", CHALLENGER, "champion", "a"): 40.0,
        },
        "fmnist_rollout_agreed_total": {(CHAMPION, CHALLENGER): 61.0, ("v-old", CHALLENGER): 5.0},
        "fmnist_rollout_compared_total": {(CHAMPION, CHALLENGER): 64.0, ("v-old", CHALLENGER): 9.0},
    }


def test_each_bucket_s_tally_reads_only_this_pair_s_rows_and_a_missing_row_is_zero():
    assert client_tallies(_counters(), CHAMPION, CHALLENGER) == [
        ClientTally(requests=9.0, errors=2.0, compared=6.0, agreed=5.5, challenger_seconds=0.7, champion_seconds=0.3),
        ClientTally(requests=4.0),
        ClientTally(compared=3.0),
    ]
    assert client_tallies({}, CHAMPION, CHALLENGER) == []


@pytest.fixture
def report():
    config = RolloutConfig(
        challenger="candidate",
        reference="registry@candidate",
        mode="canary",
        canary_percent=50.0,
        thresholds=Thresholds(min_requests=1, min_clients=1, max_client_requests=7, max_poster_labels=3),
    )
    feedback = {
        # the champion: one poster of 7 labels (5 right) over the cap of 3; the challenger: 2 of 2 right
        "fmnist_feedback_poster_labelled_total": {(CHAMPION, "p1"): 7.0, (CHALLENGER, "p2"): 2.0},
        "fmnist_feedback_poster_correct_total": {(CHAMPION, "p1"): 5.0, (CHALLENGER, "p2"): 2.0},
    }
    return build_report(config, _counters(), CHAMPION, CHALLENGER, feedback=feedback)


def test_the_report_s_agreement_and_evidence_are_this_pair_s_capped_sums(report):
    # a: 9 requests over the cap of 7, so weight 7/9: 7 requests and 2 x 7/9 = 1.5556 errors; b: 4 and 0
    assert report["evidence"] == {
        "clients": 2,
        "requests_credited": 11.0,
        "errors_credited": 1.556,
        "latency_ratio": 2.3333,  # 0.7 / 0.3 from bucket a alone (c recorded no seconds)
    }
    # images compared for this pair only; requests credited: a's 6 and c's 3 pairs, under the cap
    assert report["agreement"]["agreed"] == 61
    assert report["agreement"]["compared"] == 64
    assert report["agreement"]["requests_credited"] == 9.0
    assert report["agreement"]["rate"] == pytest.approx(5.5 / 9)
    assert report["challenger"]["requests"] == 13
    assert report["challenger"]["errors"] == 2
    assert report["champion"]["requests"] == 99
    assert report["champion"]["errors"] == 7


def test_the_report_s_accuracy_is_capped_per_poster_and_rounded_to_three_places(report):
    # the champion's poster is credited 3 of its 7 labels, and 5 x 3/7 = 2.142857 correct
    assert report["accuracy"] == {
        "champion": {"labelled": 3.0, "correct": 2.143, "posters": 1},
        "challenger": {"labelled": 2.0, "correct": 2.0, "posters": 1},
    }


def test_without_a_pair_the_agreement_interval_is_the_empty_one():
    config = RolloutConfig(challenger="candidate", reference="registry@candidate")
    counters = {"fmnist_rollout_requests_total": {(CHALLENGER, "challenger", "a"): 3.0}}
    report = build_report(config, counters, CHAMPION, CHALLENGER)
    assert report["agreement"]["requests_credited"] is None
    assert report["agreement"]["rate"] is None
    assert report["agreement"]["interval_95"] == [0.0, 1.0]
    assert report["evidence"] == {"clients": 1, "requests_credited": 3.0, "errors_credited": 0.0, "latency_ratio": None}


def _lenient(**changed: float) -> Thresholds:
    """Thresholds every figure of _counters passes, but the ones a test sets."""
    lenient = Thresholds(
        min_requests=1,
        min_clients=1,
        max_client_requests=7,
        min_agreement=0.0,
        max_error_rate=1.0,
        max_latency_ratio=10.0,
        min_labels=10,
        min_label_posters=1,
        max_poster_labels=100,
    )
    return dataclasses.replace(lenient, **changed)


def _verdict(thresholds: Thresholds, feedback=None) -> dict:
    config = RolloutConfig(challenger="candidate", reference="registry@candidate", thresholds=thresholds)
    return build_report(config, _counters(), CHAMPION, CHALLENGER, feedback=feedback)["verdict"]


def test_the_verdict_is_given_the_paired_latency_ratio():
    assert "latency_high" not in _verdict(_lenient())["codes"]
    slow = _verdict(_lenient(max_latency_ratio=1.5))  # 0.7 s against 0.3 s on the same requests: 2.33x
    assert slow["decision"] == "rollback"
    assert slow["codes"] == ["latency_high"]
    assert "2.33x" in slow["reasons"][0]


def test_the_verdict_is_given_both_versions_accuracy_from_labels():
    def labels(champion_correct: float, challenger_correct: float) -> dict:
        return {
            "fmnist_feedback_poster_labelled_total": {(CHAMPION, "p1"): 40.0, (CHALLENGER, "p2"): 40.0},
            "fmnist_feedback_poster_correct_total": {
                (CHAMPION, "p1"): champion_correct,
                (CHALLENGER, "p2"): challenger_correct,
            },
        }

    assert "accuracy_low" not in _verdict(_lenient(), labels(38.0, 38.0))["codes"]
    worse = _verdict(_lenient(), labels(40.0, 8.0))  # 100 % against 20 % on 40 labels each
    assert worse["decision"] == "rollback"
    assert worse["codes"] == ["accuracy_low"]


def test_the_verdict_names_the_challenger_s_version():
    failing = _verdict(_lenient(max_error_rate=0.01))  # 1.556 of 11 credited requests: 14.14 %
    assert failing["codes"] == ["error_rate_high"]
    assert failing["reasons"] == [f"challenger {CHALLENGER} error rate 14.14% > 1.00%"]
    passed = _verdict(_lenient())
    assert passed["decision"] == "promote", passed
    assert passed["reasons"][0].startswith(f"challenger {CHALLENGER} passed every check on 11 requests")
