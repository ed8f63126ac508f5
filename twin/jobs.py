"""A custom job of the twin runs its chief worker pool's container with podman, as Vertex AI runs it.

What Vertex AI gives the container, and so what this gives it: the image (an Artifact Registry reference, run here as
the image `make images` built from the same sources: `localhost/fmnist-<image>:<content tag>`), `command` in place of
the image's ENTRYPOINT and `args` in place of its CMD, the pool's `env`, plus the platform's variables:
AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR under the base output directory (`<dir>/model/` with
the trailing slash Vertex AI writes), CLOUD_ML_JOB_ID and CLOUD_ML_PROJECT_ID; the image's own user. What stands in
for Google's network: `--network host` and the twin's variables (STORAGE_EMULATOR_HOST, the metadata server, the
API emulators), so the container reaches fake-gcs-server and the fakes where a real job reaches Google's APIs.
Only the chief pool runs (replica 0); the twin is one machine.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PODMAN = str(REPO / "scripts" / "podman.sh")
JOB_TIMEOUT_S = 1800


def local_image(image_uri: str) -> str:
    """`<registry>/<project>/<repository>/trainer:<tag>` -> `localhost/fmnist-trainer:<tag>`."""
    name, _, tag = image_uri.rpartition("/")[2].partition(":")
    if not tag or "@" in name:
        raise ValueError(f"{image_uri}: the twin runs images by content tag (`<image>:<tag>`), not by digest")
    return f"localhost/fmnist-{name}:{tag}"


def vertex_environment(job_name: str, job_spec: dict[str, Any], project: str) -> dict[str, str]:
    """The variables Vertex AI sets in a custom job's containers."""
    env = {"CLOUD_ML_JOB_ID": job_name.rpartition("/")[2], "CLOUD_ML_PROJECT_ID": project}
    base = job_spec.get("baseOutputDirectory", {}).get("outputUriPrefix", "").rstrip("/")
    if base:
        env.update(
            AIP_MODEL_DIR=f"{base}/model/",
            AIP_CHECKPOINT_DIR=f"{base}/checkpoints/",
            AIP_TENSORBOARD_LOG_DIR=f"{base}/logs/",
        )
    return env


def podman_command(
    job_name: str, job: dict[str, Any], platform: Mapping[str, str], image: str, volumes: Sequence[str] = ()
) -> list[str]:
    """The `podman run` of the chief pool: the pool's command, args and env, over the platform's variables and
    files (`volumes`: the twin's CA)."""
    spec = job["jobSpec"]
    container = spec["workerPoolSpecs"][0]["containerSpec"]
    project = job_name.split("/")[1]
    env = {**platform, **vertex_environment(job_name, spec, project)}
    env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
    return podman_run(f"twin-{env['CLOUD_ML_JOB_ID']}-{uuid.uuid4().hex[:12]}", env, volumes, image, container)


def podman_run(
    name: str,
    env: Mapping[str, str],
    volumes: Sequence[str],
    image: str,
    container: Mapping[str, Any],
    options: Sequence[str] = (),
) -> list[str]:
    """`podman run` of a Vertex AI container spec (its command and args) on the host's network, with exactly `env`
    and `volumes`: what a custom job's pool and a batch prediction replica share."""
    command = ["run", "--rm", "--network", "host", "--name", name, *options]
    for key, value in sorted(env.items()):
        command += ["--env", f"{key}={value}"]
    for volume in volumes:
        command += ["--volume", volume]
    if container.get("command"):
        command += ["--entrypoint", json.dumps(container["command"])]
    return [PODMAN, *command, image, *container.get("args", [])]


def podman_runner(
    platform: Mapping[str, str],
    log_dir: Path,
    image_exists: Callable[[str], bool] | None = None,
    volumes: Sequence[str] = (),
):
    """A FakeVertex job runner: runs the job's container, writes its log under `log_dir`, returns '' or the error."""

    def exists(image: str) -> bool:
        return subprocess.run([PODMAN, "image", "exists", image], capture_output=True).returncode == 0

    def run(job_name: str, job: dict[str, Any]) -> str:
        container = job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
        image = local_image(container["imageUri"])
        if not (image_exists or exists)(image):
            return f"{image} (for {container['imageUri']}) is not built from these sources: run `make images`"
        log = log_dir / f"{job_name.rpartition('/')[2]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            try:
                status = subprocess.run(
                    podman_command(job_name, job, platform, image, volumes),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=JOB_TIMEOUT_S,
                ).returncode
            except subprocess.TimeoutExpired:
                return f"the job ran past {JOB_TIMEOUT_S} s; its log: {log}"
        if status != 0:
            tail = log.read_text(errors="replace")[-1500:]
            return f"the worker pool's container exited {status}; its log ({log}) ends:\n{tail}"
        return ""

    return run
