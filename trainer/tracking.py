"""Experiment tracking: a run record in the dev bucket always, and Vertex AI Experiments on the gcp target.

Why both: the run record (parameters, per-epoch metrics, final metrics) is the local target's whole experiment
history and works offline; on gcp the same numbers also go to Vertex AI Experiments, backed by the TensorBoard
instance infra/ declares (left to itself the SDK would create an unmanaged one).
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Optional

from trainer import storage

RUN_RECORD = "run.json"


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def run_dir(settings, run_id: str) -> str:
    return storage.join(settings.dev_bucket, "runs", run_id)


class RunRecord:
    """`<dev bucket>/runs/<run_id>/run.json`, rewritten (atomically) after every epoch."""

    def __init__(self, uri: str, run_id: str, params: dict, *, resumed_history: Optional[list] = None):
        self.uri = uri
        previous = _read_json(uri) if resumed_history is not None else None
        self.data: dict[str, Any] = previous or {"run_id": run_id, "started_at": utc_now(), "params": params}
        self.data.update(status="running", epochs=list(resumed_history or []), updated_at=utc_now())
        if resumed_history:
            self.data.setdefault("resumed_at", []).append({"epoch": len(resumed_history), "at": utc_now()})

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        self.data["epochs"].append({"epoch": epoch, **metrics})
        self.save()

    def finish(self, final_metrics: dict, **extra) -> None:
        self.data.update(status="completed", final_metrics=final_metrics, finished_at=utc_now(), **extra)
        self.save()

    def save(self) -> None:
        self.data["updated_at"] = utc_now()
        storage.write_text(self.uri, json.dumps(self.data, indent=2, sort_keys=True), content_type="application/json")


def _read_json(uri: str) -> Optional[dict]:
    try:
        return json.loads(storage.read_text(uri))
    except storage.NotFound:
        return None


class VertexExperiment:
    """Logs the same numbers to Vertex AI Experiments. Inside a custom job submitted with an experiment, the SDK
    already names the run (AIP_EXPERIMENT_RUN_NAME); elsewhere this starts or resumes the run `run_id`.
    Tracking failures are reported and do not stop training: the run record still holds every number."""

    def __init__(self, settings, run_id: str, aiplatform=None, environ=None):
        self.settings, self.run_id = settings, run_id
        self.environ = os.environ if environ is None else environ
        self._aiplatform = aiplatform
        self.active = False

    def _sdk(self):
        if self._aiplatform is None:
            from google.cloud import aiplatform
            self._aiplatform = aiplatform
        return self._aiplatform

    def start(self, params: dict, *, resume: bool) -> None:
        self._guard(self._start, params, resume)

    def _start(self, params: dict, resume: bool) -> None:
        sdk = self._sdk()
        vertex = self.settings.vertex
        if self.environ.get("AIP_EXPERIMENT_RUN_NAME"):
            sdk.init(project=self.settings.project_id, location=self.settings.region)
        else:
            sdk.init(project=self.settings.project_id, location=self.settings.region,
                     experiment=vertex.experiment, experiment_tensorboard=vertex.tensorboard or False)
            sdk.start_run(self.run_id, resume=resume)
        sdk.log_params({k: v for k, v in params.items() if isinstance(v, (str, int, float))})
        self.active = True

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        if self.active:
            self._guard(self._sdk().log_time_series_metrics, metrics, step=epoch)

    def finish(self, final_metrics: dict) -> None:
        if self.active:
            self._guard(self._sdk().log_metrics, final_metrics)
            if not self.environ.get("AIP_EXPERIMENT_RUN_NAME"):
                self._guard(self._sdk().end_run)

    def _guard(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never lose a training run
            self.active = False
            print(f"warning: Vertex AI Experiments tracking stopped ({type(exc).__name__}: {exc}); "
                  f"the run record in the dev bucket still has every metric", file=sys.stderr)
