"""The rollout verdict: may a challenger take over from the champion, must it stop, or is it too early to say?

Why in the contracts: the same rules judge a canary on the Vertex AI endpoint (`trainer rollout`, from Cloud
Monitoring's numbers) and in the service (champion/challenger on live traffic), so they are defined once. The
agreement between the two models is judged on its Wilson score interval, not the point estimate: a handful of
compared requests cannot promote a challenger, and a clearly worse one is stopped as soon as the interval says so.

Why per client: any caller can send as many requests as it likes, of any size, to whichever model it reaches, so
the service's evidence is tallied per client bucket (ClientTally) and `capped_evidence` credits each bucket with at
most `max_client_requests` requests, counts distinct buckets against `min_clients`, measures agreement per request
(the share of its images on which both models agree) and latency as the ratio of both models' inference time on
the same compared requests (so the batch sizes a client picks weigh the same on both sides).

Why accuracy only with enough labels, from enough posters: labels for earlier predictions (the service's
/feedback route) are the ground truth, but anyone allowed to post them could post many, or wrong ones. So each
label poster is capped like a client (`capped_accuracy`: at most `max_poster_labels` labels credited per poster
bucket), and accuracy enters the verdict only once both versions have `min_labels` credited labels from at least
`min_label_posters` posters (one poster alone can never reach that). It is then judged on the difference
challenger - champion with Newcombe's hybrid score interval (built from both Wilson intervals): rollback when the
whole interval lies below -max_accuracy_drop, wait while it straddles it, pass otherwise. Comparing the two
Wilson intervals' ends directly would roll back two equally good models on a few hundred labels each.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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
    min_clients: int = 10  # distinct client buckets that reached the challenger
    max_client_requests: int = 50  # requests credited to one client bucket (the rest count nothing)
    min_labels: int = 200  # credited labels per version before accuracy counts (ground truth, /feedback)
    min_label_posters: int = 2  # distinct label posters per version before accuracy counts
    max_poster_labels: int = 100  # labels credited to one poster bucket per version (< min_labels: none flips alone)
    max_accuracy_drop: float = 0.02  # how much less accurate than the champion a challenger may be


@dataclass(frozen=True)
class VersionStats:
    """One model version's traffic over the rollout window."""

    version: str
    requests: float
    errors: float
    latency_p99_ms: float | None = None
    clients: int | None = None  # distinct clients seen (None where unknown: a Vertex AI traffic split)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Agreement:
    """How often the challenger's top class equals the champion's, on requests both scored (agreed may be a
    fraction: each request counts as the share of its images on which both agree)."""

    agreed: float
    compared: float

    @property
    def rate(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        """Wilson score interval of the agreement rate."""
        return wilson_interval(self.agreed, self.compared, z)


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n ((0, 1) when nothing was counted)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Accuracy:
    """One model version's labelled predictions: how many were right, credited from how many label posters."""

    correct: float
    labelled: float
    posters: int = 0

    @property
    def rate(self) -> float:
        return self.correct / self.labelled if self.labelled else 0.0

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        """Wilson score interval of the accuracy."""
        return wilson_interval(self.correct, self.labelled, z)


def accuracy_difference(challenger: Accuracy, champion: Accuracy, z: float = Z_95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) of challenger.rate - champion.rate, from both Wilson
    intervals: the two proportions come from different requests, so they are independent samples."""
    p1, p2 = challenger.rate, champion.rate
    low1, high1 = challenger.interval(z)
    low2, high2 = champion.interval(z)
    difference = p1 - p2
    return (
        difference - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2),
        difference + math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2),
    )


def capped_accuracy(tallies: Iterable[tuple[float, float]], max_poster_labels: int) -> Accuracy:
    """(labelled, correct) per label-poster bucket -> one version's Accuracy, each poster credited with at most
    `max_poster_labels` labels (a poster over the cap keeps its rate, not its volume), posters counted."""
    posters = 0
    labelled = correct = 0.0
    for poster_labelled, poster_correct in tallies:
        if poster_labelled <= 0:
            continue
        posters += 1
        w = _weight(poster_labelled, max_poster_labels)
        labelled += poster_labelled * w
        correct += poster_correct * w
    return Accuracy(correct, labelled, posters)


def accuracy_counts(accuracy: Accuracy, thresholds: Thresholds) -> bool:
    """Whether a version's labels are enough evidence for the verdict (module docstring)."""
    return accuracy.labelled >= thresholds.min_labels and accuracy.posters >= thresholds.min_label_posters


@dataclass(frozen=True)
class Verdict:
    """The decision, its reasons for people (figures, versions) and one reason code per reason (a closed set,
    REASON_CODES: what a public route may show)."""

    decision: Decision
    reasons: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def to_dict(self, *, full: bool = True) -> dict[str, object]:
        out: dict[str, object] = {"decision": self.decision, "codes": list(self.codes)}
        if full:
            out["reasons"] = list(self.reasons)
        return out


REASON_CODES = (
    "error_rate_high",
    "latency_high",
    "agreement_low",
    "agreement_uncertain",
    "too_few_requests",
    "too_few_clients",
    "agreement_unmeasured",
    "passed",
    "agreement_not_applicable",
    "no_champion",
    "no_challenger",
    "accuracy_low",
    "accuracy_uncertain",
)


def verdict(
    champion: VersionStats,
    challenger: VersionStats,
    agreement: Agreement | None,
    thresholds: Thresholds = Thresholds(),
    *,
    require_agreement: bool = True,
    latency_ratio: float | None = None,
    accuracy: tuple[Accuracy, Accuracy] | None = None,
) -> Verdict:
    """Rollback on any clear failure; promote only when every check passes with enough evidence; else wait.

    `require_agreement=False` where no request is scored by both models (a traffic-split canary on the Vertex AI
    endpoint sends each request to one model): errors and latency decide alone, and the verdict says so.
    `latency_ratio`: challenger / champion inference time on the same requests (capped_evidence); when given it
    replaces the ratio of the two p99s. `challenger.clients`, when known, must reach `thresholds.min_clients`.
    `accuracy` (champion's, challenger's, from labels): judged only when both are enough (accuracy_counts).
    """
    failures: list[tuple[str, str]] = []
    pending: list[tuple[str, str]] = []
    if challenger.requests and challenger.error_rate > thresholds.max_error_rate:
        _note(
            failures,
            "error_rate_high",
            f"challenger {challenger.version} error rate {challenger.error_rate:.2%} > {thresholds.max_error_rate:.2%}",
        )
    if latency_ratio is not None:
        if latency_ratio > thresholds.max_latency_ratio:
            _note(
                failures,
                "latency_high",
                f"challenger inference time is {latency_ratio:.2f}x the champion's on the same images "
                f"(max {thresholds.max_latency_ratio})",
            )
    elif challenger.latency_p99_ms is not None and champion.latency_p99_ms:
        ratio = challenger.latency_p99_ms / champion.latency_p99_ms
        if ratio > thresholds.max_latency_ratio:
            _note(
                failures,
                "latency_high",
                f"challenger p99 latency is {ratio:.2f}x the champion's (max {thresholds.max_latency_ratio})",
            )
    if agreement is not None and not agreement.compared:
        agreement = None  # nothing compared yet is no agreement measured, never a pass
    if agreement is not None:
        low, high = agreement.interval()
        if high < thresholds.min_agreement:
            _note(
                failures,
                "agreement_low",
                f"agreement with the champion {agreement.rate:.2%} (95 % interval {low:.2%}-{high:.2%}) is below "
                f"{thresholds.min_agreement:.2%}",
            )
        elif low < thresholds.min_agreement:
            _note(
                pending,
                "agreement_uncertain",
                f"agreement interval {low:.2%}-{high:.2%} still straddles {thresholds.min_agreement:.2%}",
            )
    if accuracy is not None:
        _judge_accuracy(*accuracy, thresholds, failures, pending)
    if failures:
        return _verdict("rollback", failures)
    if challenger.requests < thresholds.min_requests:
        _note(
            pending,
            "too_few_requests",
            f"challenger served {challenger.requests:.0f} of the {thresholds.min_requests} requests needed"
            + ("" if challenger.clients is None else f" (at most {thresholds.max_client_requests} per client)"),
        )
    if challenger.clients is not None and challenger.clients < thresholds.min_clients:
        needed = thresholds.min_clients
        _note(
            pending,
            "too_few_clients",
            f"challenger seen by {challenger.clients} of the {needed} distinct clients needed",
        )
    if agreement is None and require_agreement:
        _note(pending, "agreement_unmeasured", "no agreement measured between champion and challenger")
    if pending:
        return _verdict("wait", pending)
    seen = "" if challenger.clients is None else f" from {challenger.clients} clients"
    passed = [
        ("passed", f"challenger {challenger.version} passed every check on {challenger.requests:.0f} requests{seen}")
    ]
    if agreement is None:
        passed.append(
            (
                "agreement_not_applicable",
                "agreement not measured (each request went to one model): errors and latency decided",
            )
        )
    return _verdict("promote", passed)


def _judge_accuracy(
    champion: Accuracy,
    challenger: Accuracy,
    thresholds: Thresholds,
    failures: list[tuple[str, str]],
    pending: list[tuple[str, str]],
) -> None:
    """Non-inferiority on labels: the challenger may be at most max_accuracy_drop less accurate (module docstring)."""
    if not (accuracy_counts(champion, thresholds) and accuracy_counts(challenger, thresholds)):
        return  # too few labels (or posters): accuracy does not decide, either way
    low, high = accuracy_difference(challenger, champion)
    figures = (
        f"challenger accuracy {challenger.rate:.2%} on {challenger.labelled:.0f} labels vs the champion's "
        f"{champion.rate:.2%} on {champion.labelled:.0f} (difference 95 % interval {low:+.2%} to {high:+.2%})"
    )
    if high < -thresholds.max_accuracy_drop:
        _note(failures, "accuracy_low", f"{figures} is more than {thresholds.max_accuracy_drop:.2%} worse")
    elif low < -thresholds.max_accuracy_drop:
        _note(pending, "accuracy_uncertain", f"{figures} may still be {thresholds.max_accuracy_drop:.2%} worse")


def _note(notes: list[tuple[str, str]], code: str, reason: str) -> None:
    notes.append((code, reason))


def _verdict(decision: Decision, notes: list[tuple[str, str]]) -> Verdict:
    return Verdict(decision, [reason for _, reason in notes], [code for code, _ in notes])


@dataclass(frozen=True)
class ClientTally:
    """One client bucket's counts over the window: the challenger's requests and errors, and the requests both
    models scored (`agreed` sums each one's share of agreeing images; seconds are each model's inference time)."""

    requests: float = 0.0
    errors: float = 0.0
    compared: float = 0.0
    agreed: float = 0.0
    challenger_seconds: float = 0.0
    champion_seconds: float = 0.0


@dataclass(frozen=True)
class Evidence:
    """What the verdict may use once each client's weight is capped."""

    clients: int
    requests: float
    errors: float
    agreement: Agreement | None
    latency_ratio: float | None


def _weight(count: float, cap: int) -> float:
    return 1.0 if count <= cap else cap / count


def capped_evidence(tallies: Iterable[ClientTally], max_client_requests: int) -> Evidence:
    """Each client bucket contributes at most `max_client_requests` requests (and at most that many compared
    requests): a bucket over the cap has its errors, agreement and inference seconds scaled down with its count,
    so its rates still count but its volume does not. The same sums are written in PromQL (contracts)."""
    clients = 0
    requests = errors = compared = agreed = theirs = ours = 0.0
    for tally in tallies:
        if tally.requests > 0:
            clients += 1
            w = _weight(tally.requests, max_client_requests)
            requests += tally.requests * w
            errors += tally.errors * w
        if tally.compared > 0:
            w = _weight(tally.compared, max_client_requests)
            compared += tally.compared * w
            agreed += tally.agreed * w
            theirs += tally.challenger_seconds * w
            ours += tally.champion_seconds * w
    return Evidence(
        clients,
        requests,
        errors,
        Agreement(agreed, compared) if compared else None,
        theirs / ours if ours > 0 and theirs > 0 else None,
    )
