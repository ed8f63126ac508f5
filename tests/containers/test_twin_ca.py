"""The twin's containers trust its Cloud Monitoring: the CA is mounted at a fixed path in every container the twin
starts (custom jobs, Cloud Run jobs, in-image pipeline tasks) and GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names that path,
not the host's file, which no container has."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from contracts.cloud import PROMOTION_GATE_JOB
from lifecycle.orchestration.run_compiled import InImage
from settings import load_config
from twin import jobs
from twin.cloud import CONTAINER_CA, running

CA_VARIABLE = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"
METRIC = "custom.googleapis.com/fmnist/twin_ca_check"
# In the container: the real MetricServiceClient, pointed by trainer.cloud.endpoints at the twin, lists a series
# over gRPC with TLS, its credentials from the twin's metadata server.
LIST_SERIES = f"""
import os, sys, time
from google.cloud import monitoring_v3
from trainer.cloud.endpoints import monitoring_client_kwargs
path = os.environ["{CA_VARIABLE}"]
if not os.path.isfile(path):
    sys.exit(f"{CA_VARIABLE}={{path}}: no such file in the container")
client = monitoring_v3.MetricServiceClient(**monitoring_client_kwargs())
interval = {{"end_time": {{"seconds": int(time.time())}}, "start_time": {{"seconds": 0}}}}
request = {{"name": "projects/" + os.environ["CLOUD_ML_PROJECT_ID"], "filter": 'metric.type = "{METRIC}"',
           "interval": interval}}
series = list(client.list_time_series(request=request, timeout=60))
sys.exit(0 if len(series) == 1 and series[0].points[0].value.double_value == 0.25 else f"read {{series}}")
"""


def test_every_container_of_the_twin_gets_the_ca_at_the_path_its_variable_names(tmp_path):
    settings = load_config("dev")
    with running(settings, tmp_path / "twin", run_jobs=False) as twin:
        ca, platform, volumes = twin.monitoring.ca_file, twin.container_platform, twin.container_volumes
        run_command = twin.run.podman_command(PROMOTION_GATE_JOB, {}, tmp_path / "platform.json")
        host_env = twin.environment({})
    assert platform[CA_VARIABLE] == CONTAINER_CA and host_env[CA_VARIABLE] == str(ca)  # the host keeps its own path
    assert volumes == (f"{ca}:{CONTAINER_CA}:ro",)
    job = {"jobSpec": {"workerPoolSpecs": [{"containerSpec": {"imageUri": "r/p/repo/trainer:t", "args": []}}]}}
    commands = {
        "custom job": jobs.podman_command("projects/p/locations/l/customJobs/1", job, platform, "i", volumes),
        "Cloud Run job": run_command,
        "pipeline task": InImage("i", platform_env=platform, volumes=volumes).command("t", ["python3"], {}, tmp_path),
    }
    for kind, command in commands.items():
        mounts = [command[i + 1] for i, word in enumerate(command) if word in ("-v", "--volume")]
        envs = [command[i + 1] for i, word in enumerate(command) if word == "--env"]
        assert volumes[0] in mounts, kind
        assert f"{CA_VARIABLE}={CONTAINER_CA}" in envs, kind


@pytest.mark.container
def test_a_custom_job_container_reaches_the_twins_cloud_monitoring_over_tls(trainer_image, tmp_path):
    settings = load_config("dev")
    project = settings.names.project
    with running(settings, tmp_path / "twin") as twin:
        twin.monitoring.seed_series(project, {"type": METRIC}, {"type": "global"}, [0.25])
        spec = {"imageUri": settings.names.image_uri("trainer"), "command": ["python3", "-c", LIST_SERIES]}
        pool = {"replicaCount": "1", "containerSpec": spec}
        body = {"displayName": "ca-check", "jobSpec": {"workerPoolSpecs": [pool]}}
        url = f"{twin.vertex.endpoint}/v1/projects/{project}/locations/{settings.region}/customJobs"
        request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            name = json.load(answer)["name"]
        deadline = time.monotonic() + 300
        while twin.vertex.resources[name]["state"] == "JOB_STATE_RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
        job = dict(twin.vertex.resources[name])
        listed = [r for r in twin.monitoring.requests if r.verb == "ListTimeSeries"]
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    assert len(listed) == 1 and listed[0].authorization.startswith("Bearer ")
