"""The ramp's always-valid test (contracts/sequential.py): exact values, and its level under repeated reads."""

import math
import random

import pytest

from contracts.sequential import GRID, RateTest, alternatives, log_mixture_ratio


def test_the_alternatives_are_a_geometric_grid_on_each_side():
    assert alternatives(0.2, "above", 3) == pytest.approx((0.6, 0.4, 0.3))
    assert alternatives(0.2, "below", 3) == pytest.approx((0.1, 0.05, 0.025))
    assert len(alternatives(0.01, "above")) == GRID == 10


def test_the_mixture_ratio_by_hand():
    # one success of one trial against p0 = 1/2: mean over k of p_k / p0 = 1 + 2**-k
    assert log_mixture_ratio(1, 1, 0.5, "above") == pytest.approx(math.log(1 + (1 - 2**-10) / 10), abs=1e-15)
    # one failure: mean over k of (1 - p_k) / (1 - p0) with p_k = 2**-(k+1) is 2 - 2**-k
    assert log_mixture_ratio(0, 1, 0.5, "below") == pytest.approx(math.log(2 - (1 - 2**-10) / 10), abs=1e-15)
    assert log_mixture_ratio(0, 0, 0.01, "above") == 0.0  # no data, no evidence: M_0 = 1


def test_zero_errors_are_shown_under_one_percent_after_exactly_321_requests():
    test = RateTest(0.01, 0.05)
    assert test.threshold == pytest.approx(math.log(20))
    assert not test.judge(0, 320).acceptable and test.judge(0, 321).acceptable
    assert test.judge(0, 321).log_below == pytest.approx(2.996031354363364, abs=1e-12)
    assert not test.judge(0, 10_000).too_high


def test_a_ten_percent_error_rate_is_shown_over_one_percent_after_31_requests():
    test = RateTest(0.01, 0.05)
    first = next(n for n in range(1, 1000) if test.judge(0.1 * n, n).too_high)
    assert first == 31
    assert not test.judge(0.1 * first, first).acceptable


def test_fractional_observations_count_like_their_sum():
    """A request counted as the 0.25 of its images the models disagree on: the sums are the statistic."""
    test = RateTest(0.02)
    assert test.judge(2.5, 100).log_above == pytest.approx(test.judge(2.5, 100.0).log_above)
    assert test.judge(2.5, 100).log_above > test.judge(2, 100).log_above


@pytest.mark.parametrize(
    "successes, trials, message",
    [(-1, 10, "0 <= successes"), (11, 10, "0 <= successes"), (1, -1, "0 <= successes")],
)
def test_impossible_counts_are_refused(successes, trials, message):
    with pytest.raises(ValueError, match=message):
        log_mixture_ratio(successes, trials, 0.1, "above")


@pytest.mark.parametrize("p0", [0.0, 1.0, -0.1, 1.5])
def test_a_boundary_outside_0_1_is_refused(p0):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        alternatives(p0, "above")


def test_read_after_every_ten_requests_it_rejects_a_rate_at_the_boundary_no_more_often_than_alpha():
    """The property the ramp relies on: a challenger exactly at the boundary, its evidence read 100 times per run,
    is flagged in at most alpha of the runs (1 of 200 with this seed). A Wilson interval read the same way is
    flagged in 49 of the same 200 runs (24.5 %): why a fixed-sample rule cannot be read in a loop."""
    test, rng, runs, flagged, wilson_flagged = RateTest(0.05, 0.05), random.Random(7), 200, 0, 0
    for _ in range(runs):
        errors, seen_wilson = 0, False
        for n in range(1, 1001):
            errors += rng.random() < 0.05
            if n % 10:
                continue
            p, z = errors / n, 1.959964
            low = (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
            seen_wilson = seen_wilson or low > 0.05
            if test.judge(errors, n).too_high:
                flagged += 1
                break
        wilson_flagged += seen_wilson
    assert flagged <= 0.05 * runs and (flagged, wilson_flagged) == (1, 49)
