"""The rollout verdict: may a challenger take over from the champion, must it stop, or is it too early to say?

Why in the contracts: the same rules judge a canary on the Vertex AI endpoint (`trainer rollout`, from Cloud
Monitoring's numbers) and in the service (champion/challenger on live traffic), so they are defined once. The
agreement between the two models is judged on its Wilson score interval, not the point estimate: a handful of
compared requests cannot promote a challenger, and a clearly worse one is stopped as soon as the interval says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Decision = Literal["promote", "rollback", "wait"]
Z_95 = 1.959964  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Thresholds:
    """When a challenger has been seen enough and behaves well enough (config `rollout.*`)."""

    min_requests: int = 500
    min_agreement: float = 0.98
    max_latency_ratio: float = 1.5  # challenger p99 / champion p99
    max_error_rate: float = 0.01


@dataclass(frozen=True)
class VersionStats:
    """One model version's traffic over the rollout window."""

    version: str
    requests: int
    errors: int
    latency_p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Agreement:
    """How often the challenger's top class equals the champion's, on requests both scored."""

    agreed: int
    compared: int

    @property
    def rate(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        """Wilson score interval of the agreement rate."""
        n = self.compared
        if n == 0:
            return 0.0, 1.0
        p = self.agreed / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"decision": self.decision, "reasons": list(self.reasons)}


def verdict(
    champion: VersionStats,
    challenger: VersionStats,
    agreement: Agreement | None,
    thresholds: Thresholds = Thresholds(),
    *,
    require_agreement: bool = True,
) -> Verdict:
    """Rollback on any clear failure; promote only when every check passes with enough evidence; else wait.

    `require_agreement=False` where no request is scored by both models (a traffic-split canary on the Vertex AI
    endpoint sends each request to one model): errors and latency decide alone, and the verdict says so.
    """
    failures, pending = [], []
    if challenger.requests and challenger.error_rate > thresholds.max_error_rate:
        failures.append(
            f"challenger {challenger.version} error rate {challenger.error_rate:.2%} > {thresholds.max_error_rate:.2%}"
        )
    if challenger.latency_p99_ms is not None and champion.latency_p99_ms:
        ratio = challenger.latency_p99_ms / champion.latency_p99_ms
        if ratio > thresholds.max_latency_ratio:
            failures.append(
                f"challenger p99 latency is {ratio:.2f}x the champion's (max {thresholds.max_latency_ratio})"
            )
    if agreement is not None and not agreement.compared:
        agreement = None  # nothing compared yet is no agreement measured, never a pass
    if agreement is not None:
        low, high = agreement.interval()
        if high < thresholds.min_agreement:
            failures.append(
                f"agreement with the champion {agreement.rate:.2%} (95 % interval {low:.2%}-{high:.2%}) is below "
                f"{thresholds.min_agreement:.2%}"
            )
        elif low < thresholds.min_agreement:
            pending.append(f"agreement interval {low:.2%}-{high:.2%} still straddles {thresholds.min_agreement:.2%}")
    if failures:
        return Verdict("rollback", failures)
    if challenger.requests < thresholds.min_requests:
        pending.append(f"challenger served {challenger.requests} of the {thresholds.min_requests} requests needed")
    if agreement is None and require_agreement:
        pending.append("no agreement measured between champion and challenger")
    if pending:
        return Verdict("wait", pending)
    reasons = [f"challenger {challenger.version} passed every check on {challenger.requests} requests"]
    if agreement is None:
        reasons.append("agreement not measured (each request went to one model): errors and latency decided")
    return Verdict("promote", reasons)
