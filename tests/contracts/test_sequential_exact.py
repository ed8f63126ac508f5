"""contracts/sequential.py's exact words and edges: the sentence a ramp's event log carries, each refusal's message,
the rounding slack on successes, and the defaults (found unpinned by `make mutate`)."""

import math

import pytest

from contracts.sequential import RateTest, log_mixture_ratio


def test_a_judgement_describes_itself_with_every_figure():
    judgement = RateTest(0.01).judge(3, 200)
    assert judgement.describe("x") == (
        "x 1.50% over 200.0 credited requests (boundary 1.00%): log evidence above -0.59, below -3.17, "
        "threshold 3.00 (alpha 0.05)"
    )
    assert RateTest(0.02, 0.1).judge(0, 0).describe("no data") == (
        "no data 0.00% over 0.0 credited requests (boundary 2.00%): log evidence above 0.00, below 0.00, "
        "threshold 2.30 (alpha 0.1)"
    )


def test_the_default_level_is_five_percent():
    assert RateTest(0.01).alpha == 0.05 and RateTest(0.01).threshold == math.log(20)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5, 2.0])
def test_an_alpha_outside_0_1_is_refused_by_name(alpha):
    with pytest.raises(ValueError) as raised:
        RateTest(0.01, alpha).threshold  # noqa: B018 - the property raises
    assert str(raised.value) == f"alpha {alpha!r}: expected a number strictly between 0 and 1"


@pytest.mark.parametrize("p0", [0.0, 1.0])
def test_a_boundary_outside_0_1_is_refused_by_name(p0):
    with pytest.raises(ValueError) as raised:
        log_mixture_ratio(0, 1, p0, "above")
    assert str(raised.value) == f"boundary rate {p0!r}: expected a number strictly between 0 and 1"


@pytest.mark.parametrize("successes, trials", [(-1, 10), (11, 10), (0, -1), (10.001, 10)])
def test_impossible_counts_are_refused_by_name(successes, trials):
    with pytest.raises(ValueError) as raised:
        log_mixture_ratio(successes, trials, 0.1, "above")
    assert str(raised.value) == f"{successes!r} successes of {trials!r} trials: expected 0 <= successes <= trials"


def test_float_sums_a_hair_over_their_count_are_clipped_not_refused():
    """Sums of fractional weights read from PromQL can exceed their count by rounding: clipped to the count."""
    over = 100 * (1 + 1e-12)
    assert log_mixture_ratio(over, 100, 0.1, "above") == log_mixture_ratio(100, 100, 0.1, "above")
    assert log_mixture_ratio(0, 0, 0.1, "below") == 0.0


def test_each_side_judges_its_own_statistic():
    """too_high reads the evidence above the boundary, acceptable the evidence below it (never the other)."""
    high = RateTest(0.01).judge(10, 100)  # 10 %: far above
    assert (high.too_high, high.acceptable) == (True, False)
    low = RateTest(0.01).judge(0, 1000)
    assert (low.too_high, low.acceptable) == (False, True)
    assert high.log_above == pytest.approx(log_mixture_ratio(10, 100, 0.01, "above"), abs=0)
    assert low.log_below == pytest.approx(log_mixture_ratio(0, 1000, 0.01, "below"), abs=0)


def test_a_smaller_grid_mixes_fewer_alternatives():
    # one alternative halfway to 1: p = 0.75 against p0 = 0.5, one success: log(0.75 / 0.5)
    assert log_mixture_ratio(1, 1, 0.5, "above", grid=1) == pytest.approx(math.log(1.5), abs=1e-15)
