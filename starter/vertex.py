"""Vertex AI Pipelines over its REST API: list the active runs, create one without waiting for it.

Why REST and not google-cloud-aiplatform: two calls, and the function stays small (its cold start is every
trigger's latency). `pipelineJobs.create` returns the PipelineJob itself (no long-running operation): the starter
returns as soon as Vertex AI accepted the run. The run is encrypted with the environment's key (encryptionSpec),
runs as the pipelines account, and starts from the template's `latest` tag in the KFP repository; whether it may
promote on its own is in the template (`--pending-approval` unless `registry.promote_pipeline_runs`, issue 25).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from contracts.starter import ACTIVE_STATES

TIMEOUT_S = 30


class VertexError(RuntimeError):
    """Vertex AI refused a call: the status and Google's message (the function answers 500, the sender retries)."""


@dataclass
class VertexRuns:
    """The lifecycle's runs in one project and region, created from one template."""

    session: requests.Session
    endpoint: str  # https://<region>-aiplatform.googleapis.com, or a local fake's address
    parent: str  # projects/<project>/locations/<region>
    pipeline_name: str
    body: dict[str, Any] = field(default_factory=dict)  # the run's fixed fields (run_body)

    def active(self) -> list[str]:
        states = " OR ".join(f'state="{state}"' for state in ACTIVE_STATES)
        params = {"filter": f'display_name="{self.pipeline_name}" AND ({states})', "orderBy": "create_time desc"}
        names: list[str] = []
        while True:
            page = self._call("GET", f"{self.parent}/pipelineJobs", params=params).json()
            for job in page.get("pipelineJobs", []):
                # the filter already says so; checked again, so a run is never taken for active by mistake
                if job.get("displayName") == self.pipeline_name and job.get("state") in ACTIVE_STATES:
                    names.append(str(job["name"]).rpartition("/")[2])
            if not page.get("nextPageToken"):
                return names
            params["pageToken"] = page["nextPageToken"]

    def start(self, run_id: str, labels: dict[str, str]) -> bool:
        body = {**self.body, "labels": {**self.body.get("labels", {}), **labels}}
        response = self._call("POST", f"{self.parent}/pipelineJobs", params={"pipelineJobId": run_id}, json=body)
        return response.status_code != 409

    def exists(self, run_id: str) -> bool:
        response = self.session.get(f"{self.endpoint}/v1/{self.parent}/pipelineJobs/{run_id}", timeout=TIMEOUT_S)
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise VertexError(f"GET {self.parent}/pipelineJobs/{run_id}: HTTP {response.status_code}: {response.text}")
        return True

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, f"{self.endpoint}/v1/{path}", timeout=TIMEOUT_S, **kwargs)
        if response.status_code == 409 and method == "POST":
            return response
        if response.status_code >= 400:
            raise VertexError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response


def run_body(
    *, pipeline_name: str, template_uri: str, account: str, root: str, kms_key: str, labels: dict[str, str]
) -> dict[str, Any]:
    """The PipelineJob's fields every run shares (the REST names of google.cloud.aiplatform.v1.PipelineJob)."""
    return {
        "displayName": pipeline_name,
        "templateUri": template_uri,
        "serviceAccount": account,
        "runtimeConfig": {"gcsOutputDirectory": root},
        "encryptionSpec": {"kmsKeyName": kms_key},
        "labels": dict(labels),
    }
