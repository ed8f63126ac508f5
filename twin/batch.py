"""A batch prediction job of the twin runs its model's serving container over the job's input, as Vertex AI does.

What Vertex AI does, and so what this does: it starts the model version's container (the `containerSpec` the upload
gave: image, env, routes, port) with AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE, AIP_STORAGE_URI (the
version's artifact URI) and AIP_MODE=PREDICTION, waits for its health route, then posts the instances in requests of
`batchSize` to the predict route: for `file-list` each listed object's bytes base64-encoded as {"b64": ...}, for
`jsonl` each line. The predictions land as JSON Lines `{"instance": ..., "prediction": ...}` in
`<outputUriPrefix>/prediction-<model display name>-<job id>/prediction.results-00000-of-00001` (Vertex AI names the
folder with a timestamp; the job id keeps a retried run's folder apart here too). The serving image is the one
`make images` built from these sources (twin/jobs.py `local_image`), on the host network with the twin's platform
variables, so it reads the model from fake-gcs-server. One replica: the twin is one machine.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import storage
from twin.jobs import JOB_TIMEOUT_S, PODMAN, local_image, podman_run

HEALTH_TIMEOUT_S = 300
RESULTS = "prediction.results-00000-of-00001"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def serving_command(
    name: str, model: Mapping[str, Any], image: str, port: int, platform: Mapping[str, str], volumes: Sequence[str]
) -> list[str]:
    """The `podman run` of one replica: the version's container spec over the platform's variables."""
    spec = model["containerSpec"]
    env = dict(platform)
    env.update({e["name"]: e.get("value", "") for e in spec.get("env", [])})
    env.update(
        AIP_HTTP_PORT=str(port),
        AIP_HEALTH_ROUTE=spec.get("healthRoute", "/health"),
        AIP_PREDICT_ROUTE=spec.get("predictRoute", "/predict"),
        AIP_STORAGE_URI=model["artifactUri"],
        AIP_MODE="PREDICTION",
    )
    return podman_run(name, env, volumes, image, spec, options=["--no-healthcheck"])


def instances(job: Mapping[str, Any]) -> list[Any]:
    """The instances the job's input names, as the container receives them."""
    config = job["inputConfig"]
    uris = config["gcsSource"]["uris"]
    if config["instancesFormat"] == "file-list":
        listed = [u for uri in uris for u in storage.read_text(uri).split()]
        return [{"b64": base64.b64encode(storage.read_bytes(u)).decode()} for u in listed]
    if config["instancesFormat"] == "jsonl":
        return [json.loads(line) for uri in uris for line in storage.read_text(uri).splitlines() if line.strip()]
    raise ValueError(f"instancesFormat {config['instancesFormat']!r}: the twin runs file-list and jsonl")


def batch_runner(
    platform: Mapping[str, str],
    log_dir: Path,
    volumes: Sequence[str] = (),
    image_exists: Callable[[str], bool] | None = None,
):
    """A FakeVertex batch runner: (job name, job as sent, model version) -> (error or '', fields the job gains)."""

    def exists(image: str) -> bool:
        return subprocess.run([PODMAN, "image", "exists", image], capture_output=True).returncode == 0

    def run(job_name: str, job: dict[str, Any], model: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        if model is None:
            return f"model {job.get('model')} not found", {}
        uri = model["containerSpec"]["imageUri"]
        image = local_image(uri)
        if not (image_exists or exists)(image):
            return f"{image} (for {uri}) is not built from these sources: run `make images`", {}
        job_id = job_name.rpartition("/")[2]
        port, container = _free_port(), f"twin-batch-{job_id}-{uuid.uuid4().hex[:12]}"
        log = log_dir / f"batch-{job_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        spec = model["containerSpec"]
        with log.open("w") as out:
            process = subprocess.Popen(
                serving_command(container, model, image, port, platform, volumes), stdout=out, stderr=subprocess.STDOUT
            )
        try:
            health = spec.get("healthRoute", "/health")
            deadline = time.monotonic() + HEALTH_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    return f"the serving container exited {process.returncode}; its log ({log}) ends:\n" + (
                        log.read_text(errors="replace")[-1500:]
                    ), {}
                try:
                    if _request(port, "GET", health)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    return f"no 200 on {health} within {HEALTH_TIMEOUT_S} s; its log: {log}", {}
                time.sleep(0.2)
            items = instances(job)
            size = int(job.get("manualBatchTuningParameters", {}).get("batchSize") or 64)
            lines = []
            for start in range(0, len(items), size):
                chunk = items[start : start + size]
                status, body = _request(
                    port, "POST", spec.get("predictRoute", "/predict"), json.dumps({"instances": chunk}).encode()
                )
                if status != 200:
                    return f"the predict route answered {status}: {body[:500]!r}", {}
                predictions = json.loads(body)["predictions"]
                lines += [json.dumps({"instance": i, "prediction": p}) for i, p in zip(chunk, predictions, strict=True)]
            display = model.get("displayName", "model")
            folder = storage.join(
                job["outputConfig"]["gcsDestination"]["outputUriPrefix"], f"prediction-{display}-{job_id}"
            )
            storage.write_text(storage.join(folder, RESULTS), "".join(line + "\n" for line in lines))
            return "", {
                "outputInfo": {"gcsOutputDirectory": folder},
                "completionStats": {"successfulCount": str(len(lines))},
            }
        finally:
            subprocess.run([PODMAN, "stop", "--time", "10", container], capture_output=True, timeout=JOB_TIMEOUT_S)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()

    return run
