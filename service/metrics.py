"""Prometheus metrics: request counts, latency, errors by reason, predicted classes, model and drift gauges.

Why two kinds: counters and histograms live in prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR,
set up by gunicorn_conf.py before this module is imported) so /metrics sums both gunicorn workers; the model
and drift gauges are computed at scrape time by a custom collector from state every worker can read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from service.state import ServiceState

LATENCY_BUCKETS = (
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

REQUESTS = Counter(
    "fmnist_http_requests",
    "HTTP requests by route, method, status code and the model version that answered (none while there is none)",
    ["route", "method", "status", "model_version"],
)
LATENCY = Histogram(
    "fmnist_http_request_duration_seconds",
    "Time from request start to response, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter("fmnist_request_errors", "Rejected or failed requests by reason", ["reason"])
INSTANCES = Counter("fmnist_instances", "Images received for prediction, by encoding (json, b64, binary)", ["encoding"])
PREDICTED = Counter("fmnist_predicted_class", "Predictions by predicted class", ["class_name"])
MODEL_REFUSED = Counter(
    "fmnist_model_refused",
    "Model versions a worker refused to serve (digests, missing files, a graph that fails warm-up), by role and reason",
    ["role", "reason"],
)
INDEX_REFUSED = Counter(
    "fmnist_index_refused",
    "Registry index versions a worker refused to follow (unsigned, signed by another key, bad signature), by role "
    "and reason",
    ["role", "reason"],
)
MODEL_SWAPS = Counter("fmnist_model_swaps", "Times a worker started serving another model version, by role", ["role"])
INFERENCE = Histogram(
    "fmnist_inference_duration_seconds", "ONNX Runtime time per request (all its images)", buckets=LATENCY_BUCKETS
)

# A rollout (service/rollout.py) compares two models' inference time: one image takes ~0.1 ms, below LATENCY_BUCKETS.
ROLLOUT_BUCKETS = (0.00001, 0.00002, 0.00005, 0.0001, 0.00015, 0.0002, 0.0003, *LATENCY_BUCKETS[:-1])  # 10 us to 1 s
# `client` is a bucket of the server-derived client key (service/rollout.py, CLIENT_BUCKETS values): the verdict
# counts distinct clients and caps each one's weight from these series, summed over workers and instances.
_BY_VERSION = ["model_version", "role"]
_BY_CLIENT = [*_BY_VERSION, "client"]
ROLLOUT_SCORED = Counter("fmnist_rollout_requests", "Requests a model version scored during a rollout", _BY_CLIENT)
ROLLOUT_ANSWERED = Counter(
    "fmnist_rollout_answered",
    "Requests whose reply came from this model version (the rest were shadow scores)",
    _BY_VERSION,
)
ROLLOUT_ERRORS = Counter("fmnist_rollout_errors", "Requests on which a model version's inference failed", _BY_CLIENT)
ROLLOUT_INFERENCE = Histogram(
    "fmnist_rollout_inference_duration_seconds",
    "ONNX Runtime time per image (a request's time over its images), by model version and role",
    _BY_VERSION,
    buckets=ROLLOUT_BUCKETS,
)
ROLLOUT_PREDICTED = Counter(
    "fmnist_rollout_predicted_class", "Images by predicted class, per model version", [*_BY_VERSION, "class_name"]
)
_PAIR = ["champion_version", "challenger_version"]
ROLLOUT_COMPARED = Counter("fmnist_rollout_compared", "Images scored by both the champion and the challenger", _PAIR)
ROLLOUT_AGREED = Counter("fmnist_rollout_agreed", "Compared images on which both models chose the same class", _PAIR)
ROLLOUT_PAIRED = Counter(
    "fmnist_rollout_paired_requests", "Requests scored by both models, by client bucket", [*_PAIR, "client"]
)
ROLLOUT_PAIRED_AGREEMENT = Counter(
    "fmnist_rollout_paired_agreement",
    "Sum over paired requests of the share of their images on which both models agree",
    [*_PAIR, "client"],
)
ROLLOUT_PAIRED_SECONDS = Counter(
    "fmnist_rollout_paired_inference_seconds",
    "Each model's inference time on the paired requests, by role and client bucket",
    [*_PAIR, "role", "client"],
)


class _ServiceStateCollector(Collector):
    """Model identity and drift gauges, computed when scraped."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state
        current = state.champion.current
        info = InfoMetricFamily("fmnist_model", "The model this service serves")
        info.add_metric(
            [],
            {
                "model_version": state.champion.version,
                "alias": "" if current is None else current.bundle.alias or "",
                "role": state.champion.role,
                "artifact": "" if current is None else current.artifact,
                "verified": "" if current is None else str(current.bundle.verified).lower(),
                "runtime": state.runtime_version,
            },
        )
        yield info
        loaded = GaugeMetricFamily("fmnist_model_ready", "1 once this worker's model is loaded and warmed up")
        loaded.add_metric([], 1.0 if current is not None else 0.0)
        yield loaded
        report = state.drift.report()
        yield GaugeMetricFamily(
            "fmnist_drift_images_sampled",
            "Images whose features entered the drift histograms",
            value=report["images_sampled"],
        )
        yield GaugeMetricFamily(
            "fmnist_drift_threshold",
            "PSI above which drift is flagged (DRIFT_PSI_THRESHOLD)",
            value=report["threshold"],
        )
        yield GaugeMetricFamily(
            "fmnist_drift_detected",
            "1 when any feature's or the class PSI exceeds the threshold",
            value=1.0 if report["drift_detected"] else 0.0,
        )
        per_client = state.drift.client_drift()
        images = GaugeMetricFamily(
            "fmnist_drift_client_images", "Sampled images per client bucket (drift)", labels=["client"]
        )
        drifted = GaugeMetricFamily(
            "fmnist_drift_client_detected",
            "1 when a client bucket's own sampled images drifted (judged from DRIFT_MIN_IMAGES / DRIFT_MIN_CLIENTS)",
            labels=["client"],
        )
        for bucket, (count, flag) in per_client.items():
            images.add_metric([bucket], float(count))
            drifted.add_metric([bucket], 1.0 if flag else 0.0)
        yield images
        yield drifted
        if report["status"] == "ok":
            psi = GaugeMetricFamily(
                "fmnist_drift_feature_psi", "Population stability index per input feature", labels=["feature"]
            )
            for name, item in report["features"].items():
                psi.add_metric([name], item["psi"])
            yield psi
            yield GaugeMetricFamily(
                "fmnist_drift_class_psi",
                "Population stability index of predicted classes",
                value=report["classes"]["psi"],
            )


class _DefaultRegistryView(Collector):
    """The in-process default registry, for use outside gunicorn (tests, flask run)."""

    def collect(self) -> Iterable[Metric]:
        from prometheus_client import REGISTRY

        return REGISTRY.collect()


def build_scrape_registry(state: ServiceState) -> CollectorRegistry:
    registry = CollectorRegistry()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_DefaultRegistryView())
    registry.register(_ServiceStateCollector(state))
    return registry


def build_rollout_registry() -> CollectorRegistry:
    """The counters every worker writes, summed (multiprocess files under gunicorn; this process's otherwise)."""
    registry = CollectorRegistry()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_DefaultRegistryView())
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
