"""Champion and challenger: which model answers a request, what the other one scores, and what is recorded.

shadow: the champion answers every request; every SHADOW_SAMPLE_EVERY-th request (per worker) is also scored by
the challenger on the same pixels, and only counted: its answer is never returned.
canary: CANARY_PERCENT % of the clients are answered by the challenger. A client is the request's `X-Client-Id`
header, else its address (the trusted X-Forwarded-For hop on Cloud Run); the key is hashed with the challenger's
version (blake2b), so one client sees one model for the whole rollout and a new challenger draws a new sample.
Every SHADOW_SAMPLE_EVERY-th canary request is also scored by the champion, so agreement is measured in both
modes on the requests both models scored (per image: same top class). A challenger whose inference fails in a
canary is counted as an error and the champion answers instead.
What is recorded (service/metrics.py, multiprocess counters, so /monitoring/rollout sums every worker): per model
version and role, requests scored and answered, errors, inference time, predicted classes; per champion/challenger
pair, images compared and agreed. Without CHALLENGER none of this exists: the predict route keeps its one path.
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

from contracts.rollout import Agreement, Thresholds, VersionStats, verdict
from service import metrics
from service.config import RolloutConfig

log = logging.getLogger("service")
CHAMPION, CHALLENGER = "champion", "challenger"
CLIENT_HEADER = "X-Client-Id"
OFF = {
    "mode": "off",
    "detail": "no CHALLENGER configured: the champion serves alone. Set CHALLENGER (an alias such as candidate) "
    "and ROLLOUT_MODE=shadow or canary to compare a challenger with it",
}
MAX_KEY_CHARS = 200  # a longer client id is cut: the hash needs no more, and nobody can make it expensive
_BASIS_POINTS = 10_000  # canary buckets: CANARY_PERCENT has two decimals of resolution


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
    """The challenger's slot (service.versions.ModelSlot): `current` is replaced atomically, read once here."""

    @property
    def current(self) -> Any: ...


def in_canary(key: str, salt: str, percent: float) -> bool:
    """True for `percent` % of keys: a stable hash of (salt, key) into 10,000 buckets."""
    digest = hashlib.blake2b(f"{salt}\0{key[:MAX_KEY_CHARS]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BASIS_POINTS < round(percent * 100)


@dataclass
class Answer:
    """The reply's probabilities and the model that produced them."""

    probabilities: np.ndarray
    model: Model


class _Handles:
    """One model version's metric children in one role, looked up once."""

    def __init__(self, version: str, role: str, class_names: list[str]):
        self.scored = metrics.ROLLOUT_SCORED.labels(version, role)
        self.answered = metrics.ROLLOUT_ANSWERED.labels(version, role)
        self.errors = metrics.ROLLOUT_ERRORS.labels(version, role)
        self.latency = metrics.ROLLOUT_INFERENCE.labels(version, role)
        self.classes = [metrics.ROLLOUT_PREDICTED.labels(version, role, name) for name in class_names]


class Rollout:
    """One worker's rollout: routes requests and records both models (see the module docstring)."""

    def __init__(self, config: RolloutConfig, challenger: Slot):
        self.config = config
        self.slot = challenger
        self._seen = 0
        self._handles: dict[tuple[str, str], _Handles] = {}
        self._pairs: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._counters = metrics.build_rollout_registry()

    def report(self, champion: Model | None) -> dict[str, Any]:
        """/monitoring/rollout: every worker's counters summed, judged for the versions this worker serves."""
        challenger = self.slot.current
        return build_report(
            self.config,
            read_counters(self._counters.collect()),
            None if champion is None else champion.version,
            None if challenger is None else challenger.version,
            getattr(self.slot, "waiting_reason", None),
        )

    @property
    def canary(self) -> bool:
        return self.config.mode == "canary"

    def _record(self, model: Model, role: str) -> _Handles:
        key = (model.version, role)
        handles = self._handles.get(key)
        if handles is None:
            handles = self._handles[key] = _Handles(model.version, role, model.class_names)
        return handles

    def _score(self, model: Model, role: str, pixels: np.ndarray) -> np.ndarray:
        """The model's probabilities, counted; an inference failure is counted and raised."""
        handles = self._record(model, role)
        handles.scored.inc()
        started = time.perf_counter()
        try:
            probabilities = model.classifier.predict(pixels)
        except Exception:
            handles.errors.inc()
            raise
        handles.latency.observe(time.perf_counter() - started)
        counts = np.bincount(probabilities.argmax(axis=1), minlength=len(handles.classes))
        for class_id in np.flatnonzero(counts).tolist():
            handles.classes[class_id].inc(int(counts[class_id]))
        return probabilities

    def _sampled(self) -> bool:
        self._seen += 1
        if self._seen < self.config.sample_every:
            return False
        self._seen = 0
        return True

    def _compare(self, champion: Model, challenger: Model, ours: np.ndarray, theirs: np.ndarray) -> None:
        pair = (champion.version, challenger.version)
        counters = self._pairs.get(pair)
        if counters is None:
            counters = self._pairs[pair] = (
                metrics.ROLLOUT_COMPARED.labels(*pair),
                metrics.ROLLOUT_AGREED.labels(*pair),
            )
        counters[0].inc(len(ours))
        counters[1].inc(int(np.count_nonzero(ours.argmax(axis=1) == theirs.argmax(axis=1))))

    def predict(self, pixels: np.ndarray, champion: Model, client_key: str) -> Answer:
        """Answer with the model this request is routed to; score the other one when sampled."""
        challenger: Model | None = self.slot.current
        if challenger is None:  # not loadable yet (its alias is unset, say): the champion answers, uncounted
            return Answer(champion.classifier.predict(pixels), champion)
        if self.canary and in_canary(client_key, challenger.version, self.config.canary_percent):
            try:
                theirs = self._score(challenger, CHALLENGER, pixels)
            except Exception:
                log.exception("challenger %s failed on a canary request; the champion answered", challenger.version)
            else:
                self._record(challenger, CHALLENGER).answered.inc()
                if self._sampled():
                    self._compare(champion, challenger, self._score(champion, CHAMPION, pixels), theirs)
                return Answer(theirs, challenger)
            ours = self._score(champion, CHAMPION, pixels)
            self._record(champion, CHAMPION).answered.inc()
            return Answer(ours, champion)
        ours = self._score(champion, CHAMPION, pixels)
        self._record(champion, CHAMPION).answered.inc()
        if not self.canary and self._sampled():
            try:
                theirs = self._score(challenger, CHALLENGER, pixels)
            except Exception:
                log.exception("challenger %s failed on a shadow request", challenger.version)
            else:
                self._compare(champion, challenger, ours, theirs)
        return Answer(ours, champion)


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


@dataclass
class _Tally:
    scored: int = 0
    answered: int = 0
    errors: int = 0
    classes: dict[str, int] | None = None
    buckets: dict[float, float] | None = None


def read_counters(families: Iterable[Any]) -> dict[str, dict[tuple[str, ...], Any]]:
    """The rollout families' samples summed by label values: {kind: {labels: value}}, buckets by (labels, le)."""
    out: dict[str, dict[tuple[str, ...], Any]] = {}
    for family in families:
        if not family.name.startswith("fmnist_rollout_"):
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_bucket"):
                key: tuple[str, ...] = (labels["model_version"], labels["role"], labels["le"])
            elif sample.name.endswith(("_total", "_count")):
                key = tuple(v for k, v in sorted(labels.items()) if k in ("model_version", "role", "class_name"))
                if "champion_version" in labels:
                    key = (labels["champion_version"], labels["challenger_version"])
            else:
                continue
            table = out.setdefault(sample.name, {})
            table[key] = table.get(key, 0.0) + sample.value
    return out


def version_report(counters: Mapping[str, Mapping[tuple[str, ...], Any]], version: str, role: str) -> dict[str, Any]:
    """One model version's figures in one role, from read_counters."""

    def total(name: str) -> int:
        return int(counters.get(name, {}).get((version, role), 0))

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
    requests, errors = total("fmnist_rollout_requests_total"), total("fmnist_rollout_errors_total")
    p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
    return {
        "version": version,
        "role": role,
        "requests": requests,
        "answered": total("fmnist_rollout_answered_total"),
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "inference_p50_ms": None if p50 is None else round(p50 * 1000, 4),
        "inference_p99_ms": None if p99 is None else round(p99 * 1000, 4),
        "classes": classes,
    }


def _stats(report: Mapping[str, Any]) -> VersionStats:
    return VersionStats(report["version"], report["requests"], report["errors"], report["inference_p99_ms"])


def thresholds_dict(thresholds: Thresholds) -> dict[str, Any]:
    return {
        "min_requests": thresholds.min_requests,
        "min_agreement": thresholds.min_agreement,
        "max_latency_ratio": thresholds.max_latency_ratio,
        "max_error_rate": thresholds.max_error_rate,
    }


def build_report(
    config: RolloutConfig,
    counters: Mapping[str, Mapping[tuple[str, ...], Any]],
    champion: str | None,
    challenger: str | None,
    challenger_status: str | None = None,
) -> dict[str, Any]:
    """The /monitoring/rollout document: both versions' figures, their agreement, the thresholds, the verdict."""
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
        report["verdict"] = {"decision": "wait", "reasons": [reason]}
        return report
    compared = int(counters.get("fmnist_rollout_compared_total", {}).get((champion, challenger), 0))
    agreed = int(counters.get("fmnist_rollout_agreed_total", {}).get((champion, challenger), 0))
    agreement = Agreement(agreed, compared) if compared else None
    low, high = (agreement or Agreement(0, 0)).interval()
    report["agreement"] = {
        "agreed": agreed,
        "compared": compared,
        "rate": None if agreement is None else agreement.rate,
        "interval_95": [low, high],
    }
    decision = verdict(_stats(report["champion"]), _stats(report["challenger"]), agreement, config.thresholds)
    report["verdict"] = decision.to_dict()
    return report
