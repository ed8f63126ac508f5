"""The run record: `<dev bucket>/runs/<run_id>/run.json`, every training run's parameters and metrics.

Why always: it is the local target's whole experiment history and works offline; on gcp the same numbers also go
to Vertex AI Experiments (trainer.cloud.experiments).
"""

from __future__ import annotations

import json
from typing import Any

import storage
from trainer.clock import utc_now


class RunRecord:
    """`<dev bucket>/runs/<run_id>/run.json`, rewritten (atomically) after every epoch."""

    def __init__(self, uri: str, run_id: str, params: dict, *, resumed_history: list | None = None):
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


def _read_json(uri: str) -> dict | None:
    try:
        return json.loads(storage.read_text(uri))
    except storage.NotFound:
        return None
