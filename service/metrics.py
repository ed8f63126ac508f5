"""Prometheus metrics: request counts, latency, errors by reason, predicted classes, model and drift gauges.

Why two kinds: counters and histograms live in prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR,
set up by gunicorn_conf.py before this module is imported) so /metrics sums both gunicorn workers; the model
and drift gauges are computed at scrape time by a collector that service/state.py hands to build_scrape_registry
(a leaf: this module knows no other service module).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

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


class _DefaultRegistryView(Collector):
    """The in-process default registry, for use outside gunicorn (tests, flask run)."""

    def collect(self) -> Iterable[Metric]:
        from prometheus_client import REGISTRY

        return REGISTRY.collect()


def build_scrape_registry(state: Collector) -> CollectorRegistry:
    """What /metrics exposes: every worker's counters and histograms, and `state`'s gauges (service/state.py)."""
    registry = CollectorRegistry()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_DefaultRegistryView())
    registry.register(state)
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
