"""The rollout verdict: rollback on clear failure, promote only with enough evidence, otherwise wait."""

import pytest

from contracts.rollout import Agreement, Thresholds, Verdict, VersionStats, verdict

T = Thresholds(min_requests=500, min_agreement=0.98, max_latency_ratio=1.5, max_error_rate=0.01)
CHAMPION = VersionStats("v1", requests=5000, errors=5, latency_p99_ms=10.0)


def challenger(requests=1000, errors=0, p99=11.0):
    return VersionStats("v2", requests=requests, errors=errors, latency_p99_ms=p99)


def test_wilson_interval_of_a_known_case():
    low, high = Agreement(98, 100).interval()
    assert low == pytest.approx(0.9300, abs=5e-4) and high == pytest.approx(0.9945, abs=5e-4)
    assert Agreement(0, 0).interval() == (0.0, 1.0)


def test_promotes_only_when_every_check_passes():
    result = verdict(CHAMPION, challenger(), Agreement(997, 1000), T)
    assert result.decision == "promote"


@pytest.mark.parametrize(
    "stats, agreement, reason",
    [
        (challenger(errors=11), Agreement(1000, 1000), "error rate 1.10% > 1.00%"),
        (challenger(p99=15.1), Agreement(1000, 1000), "1.51x the champion's"),
        (challenger(), Agreement(950, 1000), "below 98.00%"),
        (challenger(requests=100, errors=5), None, "error rate"),  # a clear failure needs no minimum count
    ],
)
def test_rolls_back_on_a_clear_failure(stats, agreement, reason):
    result = verdict(CHAMPION, stats, agreement, T)
    assert result.decision == "rollback" and reason in " ".join(result.reasons)


@pytest.mark.parametrize(
    "stats, agreement, reason",
    [
        (challenger(requests=499), Agreement(499, 499), "499 of the 500 requests"),
        (challenger(), Agreement(99, 100), "straddles 98.00%"),  # 99 % observed, too few to be sure
        (challenger(), None, "no agreement measured"),
    ],
)
def test_waits_without_enough_evidence(stats, agreement, reason):
    result = verdict(CHAMPION, stats, agreement, T)
    assert result.decision == "wait" and reason in " ".join(result.reasons)


def test_a_traffic_split_canary_is_judged_on_errors_and_latency_alone():
    result = verdict(CHAMPION, challenger(), None, T, require_agreement=False)
    assert result.decision == "promote" and "agreement not measured" in result.reasons[-1]
    assert verdict(CHAMPION, challenger(errors=20), None, T, require_agreement=False).decision == "rollback"


def test_boundaries_are_inclusive_of_the_limits():
    at_limit = challenger(requests=1000, errors=10, p99=15.0)  # exactly 1 % errors and 1.5x latency
    assert verdict(CHAMPION, at_limit, None, T, require_agreement=False).decision == "promote"


def test_an_empty_agreement_is_no_agreement_not_a_pass():
    """Agreement(0, 0) is what a caller has before the first comparison: it must not promote."""
    result = verdict(CHAMPION, challenger(), Agreement(0, 0), T)
    assert result == Verdict(
        "wait", ["no agreement measured between champion and challenger"], codes=["agreement_unmeasured"]
    )
    split = verdict(CHAMPION, challenger(), Agreement(0, 0), T, require_agreement=False)
    assert split.decision == "promote" and "agreement not measured" in split.reasons[-1]


def test_the_interval_stays_within_0_and_1_where_rounding_would_step_out():
    assert Agreement(20, 20).interval()[1] == 1.0  # unclamped, 1.0000000000000002
    assert all(0.0 <= bound <= 1.0 for n in range(1, 200) for a in (0, n) for bound in Agreement(a, n).interval())


def test_a_missing_latency_on_either_side_is_not_judged():
    no_p99 = VersionStats("v1", requests=5000, errors=0, latency_p99_ms=None)
    assert verdict(no_p99, challenger(p99=1000.0), Agreement(1000, 1000), T).decision == "promote"
    assert verdict(CHAMPION, challenger(p99=None), Agreement(1000, 1000), T).decision == "promote"


def test_the_verdict_as_a_document():
    reasons, codes = ["a", "b"], ["too_few_requests"]
    document = Verdict("wait", reasons, codes=codes).to_dict()
    assert document == {"decision": "wait", "reasons": ["a", "b"], "codes": ["too_few_requests"]}
    document["reasons"].append("c")
    document["codes"].append("too_few_clients")
    assert reasons == ["a", "b"] and codes == ["too_few_requests"]  # the document's lists are its own


def test_the_agreement_bounds_are_strict_at_the_threshold():
    low, high = Agreement(990, 1000).interval()
    at_high = Thresholds(min_requests=500, min_agreement=high)  # the whole interval reaches the floor: not a failure
    result = verdict(CHAMPION, challenger(), Agreement(990, 1000), at_high)
    assert result.decision == "wait" and "still straddles" in result.reasons[0]
    at_low = Thresholds(min_requests=500, min_agreement=low)  # the interval's low end is at the floor: enough
    assert verdict(CHAMPION, challenger(), Agreement(990, 1000), at_low).decision == "promote"


def test_exactly_the_minimum_of_requests_is_enough():
    assert verdict(CHAMPION, challenger(requests=500), Agreement(500, 500), T).decision == "promote"


def test_a_traffic_split_promotion_says_exactly_what_decided():
    result = verdict(CHAMPION, challenger(), None, T, require_agreement=False)
    assert result.reasons == [
        "challenger v2 passed every check on 1000 requests",
        "agreement not measured (each request went to one model): errors and latency decided",
    ]
