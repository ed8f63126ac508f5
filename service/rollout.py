"""Champion and challenger: which model answers a request, what the other one scores, and what is recorded.

shadow: the champion answers every request; every SHADOW_SAMPLE_EVERY-th request (per worker) is also scored by
the challenger on the same pixels, and only counted: its answer is never returned.
canary: CANARY_PERCENT % of the clients are answered by the challenger. Why the client cannot choose its side: the
route is a keyed hash (blake2b with ROUTING_SECRET, which no reply discloses) of who the caller is as the
platform vouches for it (service/caller.py: the identity Cloud Run verified, else the address the trusted proxy
saw), salted with the challenger's version, so one client sees one model for the whole rollout, a new
challenger draws a new sample, and no header a client writes moves it.
Every SHADOW_SAMPLE_EVERY-th canary request is also scored by the champion, so agreement is measured in both
modes on the requests both models scored. A challenger whose inference fails in a canary is counted as an error
and the champion answers instead.
What is recorded (service/metrics.py, multiprocess counters, so /monitoring/rollout sums every worker): per model
version, role and client bucket (CLIENT_BUCKETS of the same keyed hash), requests scored and errors; per version,
requests answered, inference time per image, predicted classes; per pair and client bucket, the requests both
scored, their agreement (share of agreeing images per request) and each model's inference seconds on them. The
verdict (build_report) caps each client bucket's weight and counts distinct buckets (contracts.rollout).
Without CHALLENGER none of this exists: the predict route keeps its one path.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from contracts.rollout import Agreement, ClientTally, Thresholds, VersionStats, capped_evidence, verdict
from service import metrics
from service.config import CLIENT_BUCKETS, RolloutConfig
from service.feedback import read_feedback, version_accuracy

log = logging.getLogger("service")
CHAMPION, CHALLENGER = "champion", "challenger"
OFF = {
    "mode": "off",
    "detail": "no CHALLENGER configured: the champion serves alone. Set CHALLENGER (an alias such as candidate) "
    "and ROLLOUT_MODE=shadow or canary to compare a challenger with it",
}
MAX_KEY_CHARS = 200  # a longer caller key is cut: the hash needs no more, and nobody can make it expensive

_BUCKET_NAMES = tuple(f"{i:02d}" for i in range(CLIENT_BUCKETS))
_BASIS_POINTS = 10_000  # canary buckets: CANARY_PERCENT has two decimals of resolution


@dataclass(frozen=True)
class Route:
    """Where one caller falls for one challenger: its client bucket and its canary draw (0..9999)."""

    bucket: str
    draw: int

    def in_canary(self, percent: float) -> bool:
        return self.draw < round(percent * 100)


def route(secret: bytes, salt: str, caller: str) -> Route:
    """A keyed hash of (salt, caller): without the secret nobody can tell which callers land where."""
    digest = hashlib.blake2b(f"{salt}\0{caller[:MAX_KEY_CHARS]}".encode(), key=secret, digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return Route(_BUCKET_NAMES[value % CLIENT_BUCKETS], (value // CLIENT_BUCKETS) % _BASIS_POINTS)


class Classifier(Protocol):
    def predict(self, pixels: np.ndarray) -> np.ndarray: ...


class Model(Protocol):
    """What a loaded model offers here (service.versions.LoadedModel)."""

    @property
    def version(self) -> str: ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def classifier(self) -> Classifier: ...


class Slot(Protocol):
    """What the rollout needs of the challenger's slot (service.versions.ModelSlot): `current` is replaced
    atomically, read once here; `waiting_reason` says why it is None (for the operator's report)."""

    @property
    def current(self) -> Model | None: ...

    @property
    def waiting_reason(self) -> str | None: ...


@dataclass
class Answer:
    """The reply's probabilities and the model that produced them."""

    probabilities: np.ndarray
    model: Model


class _Handles:
    """One model version's metric children in one role, looked up once (per client bucket on first use)."""

    def __init__(self, version: str, role: str, class_names: list[str]):
        self.version, self.role = version, role
        self.answered = metrics.ROLLOUT_ANSWERED.labels(version, role)
        self.latency = metrics.ROLLOUT_INFERENCE.labels(version, role)
        self.classes = [metrics.ROLLOUT_PREDICTED.labels(version, role, name) for name in class_names]
        self._scored: dict[str, Any] = {}
        self._errors: dict[str, Any] = {}

    def scored(self, bucket: str) -> Any:
        child = self._scored.get(bucket)
        if child is None:
            child = self._scored[bucket] = metrics.ROLLOUT_SCORED.labels(self.version, self.role, bucket)
        return child

    def errors(self, bucket: str) -> Any:
        child = self._errors.get(bucket)
        if child is None:
            child = self._errors[bucket] = metrics.ROLLOUT_ERRORS.labels(self.version, self.role, bucket)
        return child


class _Pair:
    """One champion/challenger pair's metric children, per client bucket on first use."""

    def __init__(self, champion: str, challenger: str):
        self.names = (champion, challenger)
        self.compared = metrics.ROLLOUT_COMPARED.labels(champion, challenger)
        self.agreed = metrics.ROLLOUT_AGREED.labels(champion, challenger)
        self._buckets: dict[str, tuple[Any, Any, Any, Any]] = {}

    def bucket(self, bucket: str) -> tuple[Any, Any, Any, Any]:
        children = self._buckets.get(bucket)
        if children is None:
            champion, challenger = self.names
            children = self._buckets[bucket] = (
                metrics.ROLLOUT_PAIRED.labels(champion, challenger, bucket),
                metrics.ROLLOUT_PAIRED_AGREEMENT.labels(champion, challenger, bucket),
                metrics.ROLLOUT_PAIRED_SECONDS.labels(champion, challenger, CHAMPION, bucket),
                metrics.ROLLOUT_PAIRED_SECONDS.labels(champion, challenger, CHALLENGER, bucket),
            )
        return children


class Rollout:
    """One worker's rollout: routes requests and records both models (see the module docstring)."""

    def __init__(self, config: RolloutConfig, challenger: Slot):
        self.config = config
        self.slot = challenger
        self._seen = 0
        self._flip = False
        self._handles: dict[tuple[str, str], _Handles] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._counters = metrics.build_rollout_registry()

    def report(self, champion: Model | None, *, full: bool = True) -> dict[str, Any]:
        """/monitoring/rollout: every worker's counters summed, judged for the versions this worker serves.
        Without `full` (the operator's token), reason codes instead of reasons and no challenger reference."""
        challenger = self.slot.current
        families = list(self._counters.collect())
        report = build_report(
            self.config,
            read_counters(families),
            None if champion is None else champion.version,
            None if challenger is None else challenger.version,
            self.slot.waiting_reason,
            feedback=read_feedback(families),
        )
        return report if full else public_report(report)

    @property
    def canary(self) -> bool:
        return self.config.mode == "canary"

    def _record(self, model: Model, role: str) -> _Handles:
        key = (model.version, role)
        handles = self._handles.get(key)
        if handles is None:
            handles = self._handles[key] = _Handles(model.version, role, model.class_names)
        return handles

    def _score(self, model: Model, role: str, pixels: np.ndarray, bucket: str) -> tuple[np.ndarray, float]:
        """The model's probabilities and inference seconds, counted; an inference failure is counted and raised."""
        handles = self._record(model, role)
        handles.scored(bucket).inc()
        started = time.perf_counter()
        try:
            probabilities = model.classifier.predict(pixels)
        except Exception:
            handles.errors(bucket).inc()
            raise
        elapsed = time.perf_counter() - started
        handles.latency.observe(elapsed / max(1, len(pixels)))
        counts = np.bincount(probabilities.argmax(axis=1), minlength=len(handles.classes))
        for class_id in np.flatnonzero(counts).tolist():
            handles.classes[class_id].inc(int(counts[class_id]))
        return probabilities, elapsed

    def _sampled(self) -> bool:
        self._seen += 1
        if self._seen < self.config.sample_every:
            return False
        self._seen = 0
        return True

    def _compare(
        self,
        champion: Model,
        challenger: Model,
        ours: tuple[np.ndarray, float],
        theirs: tuple[np.ndarray, float],
        bucket: str,
    ) -> None:
        key = (champion.version, challenger.version)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair(*key)
        images = len(ours[0])
        agreed = int(np.count_nonzero(ours[0].argmax(axis=1) == theirs[0].argmax(axis=1)))
        pair.compared.inc(images)
        pair.agreed.inc(agreed)
        requests, agreement, our_seconds, their_seconds = pair.bucket(bucket)
        requests.inc()
        agreement.inc(agreed / images if images else 1.0)
        our_seconds.inc(ours[1])
        their_seconds.inc(theirs[1])

    def _first(self) -> bool:
        """Alternates which model a paired request runs first: the second run finds warm caches, so a fixed
        order would make one model look faster on the same images."""
        self._flip = not self._flip
        return self._flip

    def predict(self, pixels: np.ndarray, champion: Model, caller: str) -> Answer:
        """Answer with the model this caller is routed to; score the other one when sampled."""
        challenger: Model | None = self.slot.current
        if challenger is None:  # not loadable yet (its alias is unset, say): the champion answers, uncounted
            return Answer(champion.classifier.predict(pixels), champion)
        bucket = (where := route(self.config.routing_secret, challenger.version, caller)).bucket
        canary = self.canary and where.in_canary(self.config.canary_percent)
        paired = self._sampled() if canary or not self.canary else False
        # who runs first on a paired request alternates; unpaired, only the model that answers runs
        champion_first = (paired and self._first()) if canary else (not paired or self._first())
        ours = self._score(champion, CHAMPION, pixels, bucket) if champion_first else None
        try:
            theirs = self._score(challenger, CHALLENGER, pixels, bucket) if canary or paired else None
        except Exception:
            log.exception("challenger %s failed on a %s request", challenger.version, self.config.mode)
            theirs = None
        if canary and theirs is not None:
            self._record(challenger, CHALLENGER).answered.inc()
            if paired:
                if ours is None:
                    ours = self._score(champion, CHAMPION, pixels, bucket)
                self._compare(champion, challenger, ours, theirs, bucket)
            return Answer(theirs[0], challenger)
        if ours is None:  # shadow with the challenger first, or it failed on a canary request: the champion answers
            ours = self._score(champion, CHAMPION, pixels, bucket)
        self._record(champion, CHAMPION).answered.inc()
        if theirs is not None:
            self._compare(champion, challenger, ours, theirs, bucket)
        return Answer(ours[0], champion)


# ---- the report: /monitoring/rollout ------------------------------------------------------------------------------


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram [(upper bound, count <= bound)], interpolated within its bucket
    (as Prometheus' histogram_quantile); the largest finite bound when it falls in the +Inf bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    low, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return low
            if count == below:
                return upper
            return low + (upper - low) * (rank - below) / (count - below)
        low, below = upper, count
    return low


# The label order of each rollout sample's key in read_counters (its table is keyed by these label values).
_KEYS: dict[str, tuple[str, ...]] = {
    "fmnist_rollout_requests_total": ("model_version", "role", "client"),
    "fmnist_rollout_errors_total": ("model_version", "role", "client"),
    "fmnist_rollout_answered_total": ("model_version", "role"),
    "fmnist_rollout_predicted_class_total": ("class_name", "model_version", "role"),
    "fmnist_rollout_inference_duration_seconds_count": ("model_version", "role"),
    "fmnist_rollout_inference_duration_seconds_sum": ("model_version", "role"),
    "fmnist_rollout_inference_duration_seconds_bucket": ("model_version", "role", "le"),
    "fmnist_rollout_compared_total": ("champion_version", "challenger_version"),
    "fmnist_rollout_agreed_total": ("champion_version", "challenger_version"),
    "fmnist_rollout_paired_requests_total": ("champion_version", "challenger_version", "client"),
    "fmnist_rollout_paired_agreement_total": ("champion_version", "challenger_version", "client"),
    "fmnist_rollout_paired_inference_seconds_total": ("champion_version", "challenger_version", "role", "client"),
}


def read_counters(families: Iterable[Any]) -> dict[str, dict[tuple[str, ...], Any]]:
    """The rollout families' samples summed by label values: {sample name: {label values in _KEYS order: value}}."""
    out: dict[str, dict[tuple[str, ...], Any]] = {}
    for family in families:
        if not family.name.startswith("fmnist_rollout_"):
            continue
        for sample in family.samples:
            order = _KEYS.get(sample.name)
            if order is None:
                continue
            key = tuple(sample.labels.get(name, "") for name in order)
            table = out.setdefault(sample.name, {})
            table[key] = table.get(key, 0.0) + sample.value
    return out


def _by_client(table: Mapping[tuple[str, ...], float], *prefix: str) -> dict[str, float]:
    """{client bucket: value} of the rows whose leading labels are `prefix` (the client is the last label)."""
    out: dict[str, float] = {}
    for key, value in table.items():
        if key[:-1] == prefix:
            out[key[-1]] = out.get(key[-1], 0.0) + value
    return out


def version_report(counters: Mapping[str, Mapping[tuple[str, ...], Any]], version: str, role: str) -> dict[str, Any]:
    """One model version's figures in one role, from read_counters."""
    per_client = _by_client(counters.get("fmnist_rollout_requests_total", {}), version, role)
    requests = int(sum(per_client.values()))
    errors = int(sum(_by_client(counters.get("fmnist_rollout_errors_total", {}), version, role).values()))
    buckets = sorted(
        (float(le), count)
        for (v, r, le), count in counters.get("fmnist_rollout_inference_duration_seconds_bucket", {}).items()
        if (v, r) == (version, role)
    )
    classes = {
        name: int(count)
        for (name, v, r), count in sorted(counters.get("fmnist_rollout_predicted_class_total", {}).items())
        if (v, r) == (version, role) and count
    }
    p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
    return {
        "version": version,
        "role": role,
        "requests": requests,
        "clients": sum(1 for count in per_client.values() if count > 0),
        "answered": int(counters.get("fmnist_rollout_answered_total", {}).get((version, role), 0)),
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "inference_p50_ms": None if p50 is None else round(p50 * 1000, 4),
        "inference_p99_ms": None if p99 is None else round(p99 * 1000, 4),
        "classes": classes,
    }


def client_tallies(
    counters: Mapping[str, Mapping[tuple[str, ...], Any]], champion: str, challenger: str
) -> list[ClientTally]:
    """The challenger's evidence per client bucket, from read_counters (contracts.rollout.capped_evidence)."""
    requests = _by_client(counters.get("fmnist_rollout_requests_total", {}), challenger, CHALLENGER)
    errors = _by_client(counters.get("fmnist_rollout_errors_total", {}), challenger, CHALLENGER)
    paired = _by_client(counters.get("fmnist_rollout_paired_requests_total", {}), champion, challenger)
    agreed = _by_client(counters.get("fmnist_rollout_paired_agreement_total", {}), champion, challenger)
    seconds = counters.get("fmnist_rollout_paired_inference_seconds_total", {})
    theirs = _by_client(seconds, champion, challenger, CHALLENGER)
    ours = _by_client(seconds, champion, challenger, CHAMPION)
    return [
        ClientTally(
            requests.get(b, 0.0),
            errors.get(b, 0.0),
            paired.get(b, 0.0),
            agreed.get(b, 0.0),
            theirs.get(b, 0.0),
            ours.get(b, 0.0),
        )
        for b in sorted(set(requests) | set(paired))
    ]


def thresholds_dict(thresholds: Thresholds) -> dict[str, Any]:
    return {
        "min_requests": thresholds.min_requests,
        "min_clients": thresholds.min_clients,
        "max_client_requests": thresholds.max_client_requests,
        "min_agreement": thresholds.min_agreement,
        "max_latency_ratio": thresholds.max_latency_ratio,
        "max_error_rate": thresholds.max_error_rate,
        "min_labels": thresholds.min_labels,
        "min_label_posters": thresholds.min_label_posters,
        "max_poster_labels": thresholds.max_poster_labels,
        "max_accuracy_drop": thresholds.max_accuracy_drop,
    }


def build_report(
    config: RolloutConfig,
    counters: Mapping[str, Mapping[tuple[str, ...], Any]],
    champion: str | None,
    challenger: str | None,
    challenger_status: str | None = None,
    *,
    feedback: Mapping[str, Mapping[tuple[str, str], float]] | None = None,
) -> dict[str, Any]:
    """The /monitoring/rollout document: both versions' figures, their agreement, the thresholds, the verdict;
    with `feedback` (service.feedback.read_feedback) both versions' accuracy from labels, which the verdict uses
    once there are enough (contracts.rollout)."""
    report: dict[str, Any] = {
        "mode": config.mode,
        "challenger_reference": config.challenger,
        "sample_every": config.sample_every,
        "thresholds": thresholds_dict(config.thresholds),
    }
    if config.mode == "canary":
        report["canary_percent"] = config.canary_percent
    report["champion"] = None if champion is None else version_report(counters, champion, CHAMPION)
    report["challenger"] = None if challenger is None else version_report(counters, challenger, CHALLENGER)
    if champion is None or challenger is None:
        missing = "champion" if champion is None else "challenger"
        reason = f"no {missing} model loaded" + (f": {challenger_status}" if challenger_status else "")
        report["agreement"] = None
        report["evidence"] = None
        report["verdict"] = {"decision": "wait", "codes": [f"no_{missing}"], "reasons": [reason]}
        return report
    pair = (champion, challenger)
    evidence = capped_evidence(client_tallies(counters, *pair), config.thresholds.max_client_requests)
    agreement = evidence.agreement
    low, high = (agreement or Agreement(0, 0)).interval()
    report["agreement"] = {
        "agreed": int(counters.get("fmnist_rollout_agreed_total", {}).get(pair, 0)),  # images
        "compared": int(counters.get("fmnist_rollout_compared_total", {}).get(pair, 0)),  # images
        "requests_credited": None if agreement is None else round(agreement.compared, 3),
        "rate": None if agreement is None else agreement.rate,  # per request, each client capped
        "interval_95": [low, high],
    }
    report["evidence"] = {
        "clients": evidence.clients,
        "requests_credited": round(evidence.requests, 3),
        "errors_credited": round(evidence.errors, 3),
        "latency_ratio": None if evidence.latency_ratio is None else round(evidence.latency_ratio, 4),
    }
    champion_stats = VersionStats(champion, report["champion"]["requests"], report["champion"]["errors"])
    challenger_stats = VersionStats(challenger, evidence.requests, evidence.errors, clients=evidence.clients)
    accuracy = None
    if feedback is not None:
        cap = config.thresholds.max_poster_labels
        accuracy = (version_accuracy(feedback, champion, cap), version_accuracy(feedback, challenger, cap))
        report["accuracy"] = {
            role: {"labelled": round(a.labelled, 3), "correct": round(a.correct, 3), "posters": a.posters}
            for role, a in zip((CHAMPION, CHALLENGER), accuracy, strict=True)
        }
    decision = verdict(
        champion_stats,
        challenger_stats,
        agreement,
        config.thresholds,
        latency_ratio=evidence.latency_ratio,
        accuracy=accuracy,
    )
    report["verdict"] = decision.to_dict()
    return report


def public_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report without what is the operator's: the challenger's reference (an alias or a bucket path) and the
    verdict's reasons (a challenger that cannot load is explained with paths); its reason codes remain."""
    verdict_ = report["verdict"]
    public = {key: value for key, value in report.items() if key not in ("challenger_reference", "verdict")}
    public["verdict"] = {"decision": verdict_["decision"], "codes": verdict_["codes"]}
    return public
