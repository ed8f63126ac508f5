"""What one worker serves: the champion's ModelSlot (service/versions.py), drift statistics, metric handles.

Why a service can hold no model: on a fresh project the registry is empty, and Cloud Run only accepts a revision
whose container starts and passes its startup probe. So a registry reference whose alias is not set yet (or names
a version that was refused) starts the service without a model; /health passes, /predict answers 503 `no_model`
saying how to promote one, and each worker's poll thread (every MODEL_POLL_S seconds) starts serving the champion
once there is one. Only a registry reference waits: a model directory (what Vertex AI passes in AIP_STORAGE_URI)
that is missing or damaged still stops start-up, so there /health keeps meaning "the model is loaded".
Request code reads `champion.current` once and uses that snapshot for the whole request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import orjson
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from service import metrics
from service.config import ServiceConfig
from service.drift import DriftMonitor
from service.errors import RequestError
from service.logs import RequestLog
from service.openapi import build_openapi
from service.rollout import Rollout
from service.versions import NO_MODEL, LoadedModel, ModelSlot

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

log = logging.getLogger("service")
OPERATOR_HINT = "the full reason is in the service log, and on /health with the operator's token"
PROMOTE_HINT = (
    "train, export and register a model, then promote it (python -m trainer registry promote, or `make demo` "
    "locally); this service re-reads the registry every {seconds:g} s and starts serving the champion then"
)


class ServiceState:
    """One worker's serving state around its champion slot."""

    def __init__(self, config: ServiceConfig, champion: ModelSlot):
        self.config = config
        self.champion = champion
        self.runtime_version = "onnxruntime (not loaded in this process)"
        state_dir = config.state_dir
        self.drift = DriftMonitor(
            None,
            config.drift_psi_threshold,
            config.drift_min_images,
            config.drift_sample_every,
            os.path.join(state_dir, "drift") if state_dir else None,
            config.drift_min_clients,
            config.drift_max_client_images,
        )
        self.request_log = RequestLog(config.log_level, config.google_cloud_project, NO_MODEL)
        self.scrape_registry = metrics.build_scrape_registry(_ServiceStateCollector(self))
        self.openapi_bytes = orjson.dumps(build_openapi(config, NO_MODEL))
        self._class_counters: dict[str, Counter] = {}
        self._instance_counters: dict[str, Counter] = {}
        self._request_counters: dict[tuple[str, str, int, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}
        self._drift_version: str | None = None  # the version whose predictions the drift counts hold
        if champion.pending is not None:
            self._describe(champion.pending.version, champion.pending.metadata.get("feature_baseline"))
        champion.on_swap(self._serving)
        self.rollout: Rollout | None = None  # None: the champion alone, and predict's one path
        self.challenger: ModelSlot | None = None
        if config.rollout is not None:
            challenger = ModelSlot(
                config.rollout.reference, "challenger", config, artifact_preference=config.model_artifact
            )
            challenger.prepare()  # the gunicorn master reads it once; each worker builds its own session
            self.rollout, self.challenger = Rollout(config.rollout, challenger), challenger

    @property
    def version(self) -> str:
        return self.champion.version

    def activate(self) -> None:
        """Build this process's inference session and warm it up (each gunicorn worker, after the fork)."""
        self.champion.activate()
        if self.challenger is not None:
            self.challenger.activate()  # a registry challenger that cannot load is waited for, never fatal

    def start_polling(self) -> None:
        """Follow the registry alias from now on (a daemon thread; call it in the process that serves)."""
        self.champion.start(self.config.model_poll_s)
        if self.challenger is not None:
            self.challenger.start(self.config.model_poll_s)

    def _serving(self, loaded: LoadedModel) -> None:
        """A version starts serving (in the thread that swapped): what describes the model follows it."""
        self.runtime_version = loaded.classifier.runtime_version
        self._describe(loaded.version, loaded.bundle.metadata.get("feature_baseline"))

    def _describe(self, version: str, baseline: object) -> None:
        # Counts binned under one version's baseline say nothing about the next one: a swap starts them again
        # (every worker's: the one that swaps last may wipe up to one poll interval of the new version's counts).
        if self._drift_version is not None and version != self._drift_version:
            self.drift.reset()
        self._drift_version = version
        self.drift.use_baseline(baseline)
        self.request_log.model_version = version
        self.openapi_bytes = orjson.dumps(build_openapi(self.config, version))

    def unavailable(self, full: bool = False) -> RequestError:
        """The 503 for a request that found no model: loading (not ready) or none promoted (no_model); the
        reason's text (bucket paths, alias names, digests) only with `full` (the operator's token)."""
        if self.champion.pending is not None or not self.champion.follows_registry:
            return RequestError(503, "not_ready", "the model is loading or warming up; retry shortly")
        return RequestError(503, "no_model", self.no_model_detail(full))

    @property
    def waiting_code(self) -> str:
        return self.champion.waiting_code or "not_promoted"

    def no_model_detail(self, full: bool = False) -> str:
        hint = PROMOTE_HINT.format(seconds=self.config.model_poll_s)
        if full:
            return f"no model has been promoted yet ({self.champion.waiting_reason}); {hint}"
        return f"no model is served yet (reason: {self.waiting_code}; {OPERATOR_HINT}); {hint}"

    def count_request(self, route: str, method: str, status: int, latency_s: float, version: str) -> None:
        key = (route, method, status, version)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = metrics.REQUESTS.labels(route, method, str(status), version)
        counter.inc()
        histogram = self._latency.get(route)
        if histogram is None:
            histogram = self._latency[route] = metrics.LATENCY.labels(route)
        histogram.observe(latency_s)

    def count_predictions(self, encoding: str, predicted: np.ndarray, class_names: list[str]) -> None:
        counter = self._instance_counters.get(encoding)
        if counter is None:
            counter = self._instance_counters[encoding] = metrics.INSTANCES.labels(encoding)
        counter.inc(len(predicted))
        if len(predicted) == 1:
            self._class_counter(class_names[int(predicted[0])]).inc()
            return
        per_class = np.bincount(predicted, minlength=len(class_names))
        for class_id in np.flatnonzero(per_class).tolist():
            self._class_counter(class_names[class_id]).inc(int(per_class[class_id]))

    def _class_counter(self, name: str) -> Counter:
        counter = self._class_counters.get(name)
        if counter is None:
            counter = self._class_counters[name] = metrics.PREDICTED.labels(name)
        return counter


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
