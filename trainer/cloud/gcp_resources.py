"""`gcp_resources`: how a pipeline task tells Vertex AI Pipelines which job it launched.

Why: a task that starts a Vertex AI job and waits for it must publish the job as the `gcp_resources` output
parameter (google-cloud-pipeline-components' GcpResources proto as JSON), or cancelling the pipeline run leaves the
job running and billing. Vertex AI Pipelines cancels the resources of the types it knows (CustomJob,
BatchPredictionJob, ...). The file is written as soon as the job exists, before the wait, as the
google-cloud-pipeline-components launchers do. `pipeline-step` names the file through FMNIST_GCP_RESOURCES; outside
a pipeline nothing is written. While it waits, the command also cancels its job on SIGTERM (a cancelled run stops its
tasks that way, and so does Ctrl-C's cousin `kill`), so the job does not outlive the process that waits for it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV = "FMNIST_GCP_RESOURCES"  # set by pipeline-step: the gcp_resources parameter's output file
PARAMETER = "gcp_resources"  # the output parameter's name, as Vertex AI Pipelines reads it


def resource_uri(location: str, resource_name: str) -> str:
    """The regional REST URI of a Vertex AI resource, the form the pipeline components write."""
    return f"https://{location}-aiplatform.googleapis.com/v1/{resource_name}"


def document(resource_type: str, location: str, resource_name: str) -> str:
    """The GcpResources JSON of one resource (field names as protobuf's JSON mapping writes them)."""
    resource = {"resourceType": resource_type, "resourceUri": resource_uri(location, resource_name)}
    return json.dumps({"resources": [resource]})


def publish(resource_type: str, location: str, job: Any, environ: Mapping[str, str] | None = None) -> None:
    """Write `job`'s document to the file FMNIST_GCP_RESOURCES names; nothing, and no read of the job, when it is
    unset (not in a pipeline). `job`: an SDK job (its resource_name is read) or a resource name."""
    path = (os.environ if environ is None else environ).get(ENV)
    if path:
        name = job if isinstance(job, str) else job.resource_name
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(document(resource_type, location, name))


@contextmanager
def cancel_on_sigterm(job: Any, what: str) -> Iterator[None]:
    """While the block waits for `job`: SIGTERM cancels the job, then exits with 143 (128 + SIGTERM).

    The handler raises SystemExit wherever the main thread is at that moment, and Python ignores an exception raised
    in a finaliser: in CI the signal ran inside the garbage collector's close of urllib3's pooled connections (a
    `weakref.finalize`), the wait went on, saw the job cancelled and raised "Job failed". So once the signal came,
    the block ends in that SystemExit whatever it raises or returns afterwards.
    """
    received: list[int] = []

    def cancel(signum: int, frame: Any) -> None:
        received.append(signum)
        print(f"SIGTERM: cancelling {what} {job.resource_name}", file=sys.stderr, flush=True)
        try:
            job.cancel()
        except Exception as exc:  # noqa: BLE001 - any failure: the exit stays 143, but the job may still run: say so
            print(f"SIGTERM: could not cancel {what} {job.resource_name}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set a handler
        yield
        return
    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    except BaseException:
        if not received:
            raise
        # after the signal, whatever ended the wait (the handler's exit, the cancelled job's error) ends as exit 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        raise SystemExit(128 + received[0])
