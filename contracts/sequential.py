"""Always-valid tests for a ramp step: a mixture sequential probability ratio test on a rate in [0, 1].

Why sequential: a ramp controller reads the fleet's counters again and again (every Cloud Scheduler tick, every
`--watch` interval) and acts on the first read that passes. A fixed-sample test read that way rejects far more often
than its alpha (each read is another chance to cross by luck); the Wilson rule of contracts.rollout is fine for one
read per canary, not for a loop. A mixture SPRT stays valid however often, and whenever, it is read.

Which one: Robbins' mixture of likelihood ratios (Robbins 1970, "Statistical methods related to the law of the
iterated logarithm"; Howard, Ramdas, McAuliffe, Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist. 49(2)). To test H0 "rate <= p0" it averages, with equal weights, the
Bernoulli likelihood ratios of alternatives p_k > p0 (a geometric grid towards p0, so small and large excesses are
both found quickly):

    M_n = mean_k  (p_k / p0) ** S * ((1 - p_k) / (1 - p0)) ** (n - S)

For any true rate <= p0 each term, and so M_n, is a nonnegative supermartingale with M_0 = 1, and Ville's
inequality gives P(M_n >= 1/alpha for some n) <= alpha: stopping at the first read with M_n >= 1/alpha is a level-
alpha test, at any read schedule. "rate >= p0" is tested the same way with alternatives below p0.

Why sums are enough: each term depends on the data only through S (the sum of the observations) and n (their
number), which is what PromQL returns. Observations may be fractions in [0, 1] (the share of a request's images on
which two models disagree, or a client's capped weight): a likelihood ratio is convex in the observation, so the
chord through 0 and 1 bounds it and the Bernoulli bound still holds for any [0, 1] variable with the same mean.
Pure Python, no imports beyond math: the trainer's ramp (trainer/cloud/ramp.py) judges with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Side = Literal["above", "below"]
GRID = 10  # alternatives per side: p0 + (1 - p0) / 2**k above, p0 / 2**k below, k = 1..GRID


def alternatives(p0: float, side: Side, grid: int = GRID) -> tuple[float, ...]:
    """The mixture's alternatives: a geometric grid from halfway to the edge down to p0's neighbourhood."""
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"boundary rate {p0!r}: expected a number strictly between 0 and 1")
    if side == "above":
        return tuple(p0 + (1.0 - p0) / 2**k for k in range(1, grid + 1))
    return tuple(p0 / 2**k for k in range(1, grid + 1))


def log_mixture_ratio(successes: float, trials: float, p0: float, side: Side, grid: int = GRID) -> float:
    """log M_n for S = `successes` out of n = `trials` ([0, 1] observations summed), H0 on `side`'s opposite."""
    if trials < 0 or successes < 0 or successes > trials * (1 + 1e-9):
        raise ValueError(f"{successes!r} successes of {trials!r} trials: expected 0 <= successes <= trials")
    successes = min(successes, trials)
    failures = trials - successes
    logs = [
        successes * math.log(p / p0) + failures * math.log((1.0 - p) / (1.0 - p0)) for p in alternatives(p0, side, grid)
    ]
    top = max(logs)
    return top + math.log(sum(math.exp(value - top) for value in logs) / len(logs))


@dataclass(frozen=True)
class RateTest:
    """Both one-sided mixture SPRTs on one rate against one boundary, at level `alpha` each."""

    boundary: float  # p0: the highest acceptable rate (an error rate, a disagreement rate)
    alpha: float = 0.05

    @property
    def threshold(self) -> float:
        """log(1/alpha): a statistic at or over it rejects."""
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha {self.alpha!r}: expected a number strictly between 0 and 1")
        return math.log(1.0 / self.alpha)

    def judge(self, successes: float, trials: float) -> RateJudgement:
        above = log_mixture_ratio(successes, trials, self.boundary, "above")
        below = log_mixture_ratio(successes, trials, self.boundary, "below")
        return RateJudgement(self, successes, trials, above, below)


@dataclass(frozen=True)
class RateJudgement:
    """One read of a RateTest: `too_high` when the rate is shown above the boundary, `acceptable` when below."""

    test: RateTest
    successes: float
    trials: float
    log_above: float  # evidence that the rate exceeds the boundary
    log_below: float  # evidence that it is under it

    @property
    def too_high(self) -> bool:
        return self.log_above >= self.test.threshold

    @property
    def acceptable(self) -> bool:
        return self.log_below >= self.test.threshold

    def describe(self, what: str) -> str:
        rate = self.successes / self.trials if self.trials else 0.0
        return (
            f"{what} {rate:.2%} over {self.trials:.1f} credited requests (boundary {self.test.boundary:.2%}): "
            f"log evidence above {self.log_above:.2f}, below {self.log_below:.2f}, "
            f"threshold {self.test.threshold:.2f} (alpha {self.test.alpha})"
        )
