"""The twin's Cloud Run: the Admin API v2 `jobs.run` of the promoter's jobs, executed in the trainer image.

Why: on Google Cloud the pipeline's promote step does not promote; it executes the promoter's gate job
(`trainer promotion request`, issue 25) and reads the signed index after it. The twin runs that job as Cloud Run
would: the job's fixed command (contracts.cloud.promotion_job_command) in the trainer image `make images` built from
these sources, as the image's user, with the execution's argument and environment overrides appended, and answers
the long-running operation the requester polls. What stands in for Google's network is what a twin custom job gets
(twin/jobs.py), plus the job definition's own variables (the twin's smoke gate, where the promoter's local signing
key lives); both are listed in /etc/fmnist/platform-env.json (trainer/cloud/promotion.py PLATFORM_ENV_FILE), so the
promoter tells them from an execution's overrides, which it still refuses.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from contracts.cloud import PROMOTION_JOB_ACTIONS, promotion_job_command
from contracts.images import source_tag
from twin import wire
from twin.jobs import JOB_TIMEOUT_S, PODMAN

PLATFORM_ENV_FILE = "/etc/fmnist/platform-env.json"  # trainer/cloud/promotion.py reads it there
IMAGE_UID = 10001  # the trainer image's user (trainer/Dockerfile): it writes the promoter's key directory


@dataclass
class FakeRun:
    """Executions of the promoter's jobs; `platform` and `job_env` are what each container gets besides overrides."""

    env: str
    workdir: Path
    platform: Mapping[str, str]
    job_env: dict[str, str] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)  # host directories mounted at the same path (read-write)
    volumes: Sequence[str] = ()  # podman `--volume`s the platform provides (the twin's CA certificate)
    requests: list[wire.Request] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoint: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: wire.Request) -> wire.Answer:
        self.requests.append(request)
        if request.method == "GET" and request.path in self.operations:
            with self._lock:
                return 200, dict(self.operations[request.path])
        if request.method == "POST" and request.verb == "run":
            parent, _, job = request.path.rpartition("/jobs/")
            if job not in PROMOTION_JOB_ACTIONS:
                return wire.not_found(request.path)
            name = f"{parent}/operations/{len(self.operations) + 1}"
            with self._lock:
                self.operations[name] = {"name": name, "done": False}
            overrides = (request.body.get("overrides") or {}).get("containerOverrides") or [{}]
            threading.Thread(target=self._execute, args=(name, job, overrides[0]), daemon=True).start()
            return 200, {"name": name, "done": False}
        return wire.not_found(request.path)

    def podman_command(self, job: str, override: Mapping[str, Any], platform_file: Path) -> list[str]:
        image = f"localhost/fmnist-trainer:{source_tag('trainer')}"
        command = promotion_job_command(self.env, job)
        env = {**self.platform, **self.job_env}
        run = ["run", "--rm", "--network", "host", "--name", f"twin-{job}-{uuid.uuid4().hex[:12]}"]
        for key, value in sorted(env.items()):
            run += ["--env", f"{key}={value}"]
        for item in override.get("env", []):  # the execution's own variables: the promoter judges them
            run += ["--env", f"{item['name']}={item.get('value', '')}"]
        run += ["-v", f"{platform_file}:{PLATFORM_ENV_FILE}:ro"]
        for directory in self.mounts:
            run += ["-v", f"{directory}:{directory}"]
        for volume in self.volumes:
            run += ["-v", volume]
        run += ["--entrypoint", json.dumps(command[:1]), image, *command[1:], *override.get("args", [])]
        return [PODMAN, *run]

    def _execute(self, name: str, job: str, override: Mapping[str, Any]) -> None:
        logs = self.workdir / "run-jobs"
        logs.mkdir(parents=True, exist_ok=True)
        platform_file = logs / "platform-env.json"
        platform_file.write_text(json.dumps({**self.platform, **self.job_env}))
        for directory in self.mounts:  # the image's user writes the promoter's key and scratch files there
            for root, _dirs, files in os.walk(directory):
                for entry in (root, *(os.path.join(root, f) for f in files)):
                    os.chown(entry, IMAGE_UID, IMAGE_UID)
        log = logs / f"{job}-{name.rpartition('/')[2]}.log"
        with log.open("w") as out:
            try:
                status = subprocess.run(
                    self.podman_command(job, override, platform_file),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=JOB_TIMEOUT_S,
                ).returncode
            except subprocess.TimeoutExpired:
                status = -1
        result: dict[str, Any] = {"name": name, "done": True}
        if status != 0:
            tail = log.read_text(errors="replace")[-1500:]
            result["error"] = {"code": 2, "message": f"{job} exited {status}; its log ({log}) ends:\n{tail}"}
        else:
            result["response"] = {"@type": "type.googleapis.com/google.cloud.run.v2.Execution", "name": name}
        with self._lock:
            self.operations[name] = result


@contextmanager
def serve(env: str, workdir: Path, platform: Mapping[str, str], volumes: Sequence[str] = ()) -> Iterator[FakeRun]:
    """Start it on an ephemeral port; `fake.endpoint` is the value of RUN_EMULATOR_HOST."""
    fake = FakeRun(env, workdir, platform, volumes=volumes)

    def answer(handler: BaseHTTPRequestHandler, raw: bytes) -> wire.Answer:
        request = wire.parse(handler.command, handler.path, raw, ("/v2/",), handler.headers.get("Authorization", ""))
        return fake.answer(request)

    with wire.serve(answer) as url:
        fake.endpoint = url
        yield fake
