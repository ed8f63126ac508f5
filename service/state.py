"""What one worker serves: the model bundle (or none yet), its inference session, drift statistics, metric handles.

Why a service can hold no model: on a fresh project the registry is empty, and Cloud Run only accepts a revision
whose container starts and passes its startup probe. So a registry reference whose alias is not set yet starts
the service without a model; /health passes, /predict answers 503 `no_model` saying how to promote one, and each
worker re-reads the registry at most every MODEL_RECHECK_S seconds (on a request) until a champion appears.
Only a registry reference waits: a model directory (what Vertex AI passes in AIP_STORAGE_URI) that is missing
still stops start-up, so there /health keeps meaning "the model is loaded".
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import orjson

from contracts.dataset import CLASS_NAMES
from service import metrics
from service.config import ServiceConfig
from service.drift import DriftMonitor
from service.errors import RequestError
from service.logs import RequestLog
from service.model_source import ModelBundle, ModelLoadError, NoModelPromoted, load_bundle
from service.openapi import build_openapi
from service.rollout import Rollout
from service.runtime import ModelRuntimeError, OnnxClassifier
from service.versions import LoadedModel, ModelSlot

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

log = logging.getLogger("service")
NO_MODEL = "none"  # the model version reported while no model is served
PROMOTE_HINT = (
    "train, export and register a model, then promote it (python -m trainer registry promote, or `make demo` "
    "locally); this service re-reads the registry every {seconds:g} s and starts serving the champion then"
)


class ServiceState:
    """One worker's serving state; `bundle` is None while the registry has no model under the alias."""

    def __init__(self, config: ServiceConfig, bundle: ModelBundle | None, waiting_reason: str | None = None):
        self.config = config
        self.bundle: ModelBundle | None = None
        self.class_names: list[str] = list(CLASS_NAMES)
        self.classifier: OnnxClassifier | None = None
        self.ready = False
        self.runtime_version = "onnxruntime (not loaded in this process)"
        self.waiting_reason = waiting_reason
        self._next_check = 0.0
        state_dir = os.environ.get("SERVICE_STATE_DIR")
        self.drift = DriftMonitor(
            None,
            config.drift_psi_threshold,
            config.drift_min_images,
            config.drift_sample_every,
            os.path.join(state_dir, "drift") if state_dir else None,
        )
        self.request_log = RequestLog(config.log_level, config.google_cloud_project, NO_MODEL)
        self.scrape_registry = metrics.build_scrape_registry(self)
        self.openapi_bytes = orjson.dumps(build_openapi(config, NO_MODEL))
        self._class_counters: list[Counter] = []
        self._instance_counters: dict[str, Counter] = {}
        self._request_counters: dict[tuple[str, str, int], Counter] = {}
        self._latency: dict[str, Histogram] = {}
        self.champion_model: LoadedModel | None = None  # what a rollout needs of the champion (set by activate)
        self.rollout: Rollout | None = None  # None: the champion alone, and predict's one path
        self.challenger: ModelSlot | None = None
        if config.rollout is not None:
            challenger = ModelSlot(
                config.rollout.reference, "challenger", config, artifact_preference=config.model_artifact
            )
            challenger.prepare()  # the gunicorn master reads it once; each worker builds its own session
            self.rollout, self.challenger = Rollout(config.rollout, challenger), challenger
        if bundle is not None:
            self.install(bundle)

    @property
    def version(self) -> str:
        return NO_MODEL if self.bundle is None else self.bundle.version

    def install(self, bundle: ModelBundle) -> None:
        """Serve `bundle` from now on (its session is built by `activate`)."""
        self.bundle = bundle
        self.class_names = bundle.class_names
        self.waiting_reason = None
        self.drift.use_baseline(bundle.metadata.get("feature_baseline"))
        self.request_log.model_version = bundle.version
        self.openapi_bytes = orjson.dumps(build_openapi(self.config, bundle.version))
        self._class_counters = [metrics.PREDICTED.labels(name) for name in self.class_names]

    def activate(self) -> None:
        """Build this process's inference session and warm it up; /health turns 200 only after this."""
        if self.challenger is not None and self.challenger.current is None:
            self.challenger.activate()  # a registry challenger that cannot load is waited for, never fatal
            self.challenger.start(self.config.model_poll_s)
        if self.ready or self.bundle is None:
            return
        started = time.perf_counter()
        classifier = OnnxClassifier(
            self.bundle.model_path, self.bundle.metadata["input"]["name"], len(self.class_names)
        )
        classifier.warm_up()
        self.classifier = classifier
        self.champion_model = LoadedModel(self.bundle, classifier, self.bundle.artifact)
        self.runtime_version = classifier.runtime_version
        self.ready = True
        log.info(
            "model %s ready in worker %d (session + warm-up %.1f ms)",
            self.bundle.version,
            os.getpid(),
            (time.perf_counter() - started) * 1000,
        )

    def serving_classifier(self) -> OnnxClassifier:
        """The session to predict with, or a 503 saying why there is none (re-checking the registry first)."""
        if self.bundle is None:
            self._look_for_promoted_model()
        if self.classifier is not None and self.ready:
            return self.classifier
        if self.bundle is None:
            raise RequestError(503, "no_model", self.no_model_detail())
        raise RequestError(503, "not_ready", "the model is loading or warming up; retry shortly")

    def no_model_detail(self) -> str:
        hint = PROMOTE_HINT.format(seconds=self.config.model_poll_s)
        return f"no model has been promoted yet ({self.waiting_reason}); {hint}"

    def _look_for_promoted_model(self) -> None:
        """Load the alias's model if the registry names one now; at most once per MODEL_RECHECK_S."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.config.model_poll_s
        try:
            bundle = load_bundle(self.config.model_uri)
        except NoModelPromoted as exc:
            self.waiting_reason = str(exc)
            return
        except ModelLoadError as exc:
            log.error("the registry names a model, but it cannot be served: %s", exc)
            self.waiting_reason = str(exc)
            return
        self.install(bundle)
        try:
            self.activate()
        except ModelRuntimeError as exc:
            log.error("model %s cannot be served: %s", bundle.version, exc)
            self.bundle, self.waiting_reason = None, str(exc)

    def count_request(self, route: str, method: str, status: int, latency_s: float) -> None:
        key = (route, method, status)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = metrics.REQUESTS.labels(route, method, str(status))
        counter.inc()
        histogram = self._latency.get(route)
        if histogram is None:
            histogram = self._latency[route] = metrics.LATENCY.labels(route)
        histogram.observe(latency_s)

    def count_predictions(self, encoding: str, predicted: np.ndarray) -> None:
        counter = self._instance_counters.get(encoding)
        if counter is None:
            counter = self._instance_counters[encoding] = metrics.INSTANCES.labels(encoding)
        counter.inc(len(predicted))
        if len(predicted) == 1:
            self._class_counters[int(predicted[0])].inc()
            return
        per_class = np.bincount(predicted, minlength=len(self.class_names))
        for class_id in np.flatnonzero(per_class).tolist():
            self._class_counters[class_id].inc(int(per_class[class_id]))
