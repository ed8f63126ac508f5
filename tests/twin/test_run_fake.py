"""The twin's Cloud Run (twin/run.py): `jobs.run` of a promoter job starts one execution and answers the operation
the requester polls; the container it would start runs the job's fixed command with the overrides appended, the
platform's variables listed in the file the promoter reads. (The execution itself runs in `make twin-gcp`.)"""

from __future__ import annotations

import json

from contracts.cloud import PROMOTION_GATE_JOB, promotion_job_command
from contracts.images import source_tag
from twin import wire
from twin.run import PLATFORM_ENV_FILE, FakeRun


def _request(method: str, path: str, body: dict | None = None) -> wire.Request:
    return wire.parse(method, path, json.dumps(body or {}).encode(), ("/v2/",), "Bearer t")


def test_a_run_starts_one_execution_and_its_operation_ends(tmp_path, monkeypatch):
    fake = FakeRun("dev", tmp_path, {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"})
    executed = []
    monkeypatch.setattr(fake, "_execute", lambda name, job, override: executed.append((name, job, override)))
    parent = "projects/p/locations/l"
    override = {"args": ["--model-dir", "gs://m/jobs/r/model"]}
    status, operation = fake.answer(
        _request(
            "POST", f"/v2/{parent}/jobs/{PROMOTION_GATE_JOB}:run", {"overrides": {"containerOverrides": [override]}}
        )
    )
    assert status == 200 and operation == {"name": f"{parent}/operations/1", "done": False}
    import time

    for _ in range(100):
        if executed:
            break
        time.sleep(0.01)
    assert executed == [(f"{parent}/operations/1", PROMOTION_GATE_JOB, override)]
    assert fake.answer(_request("GET", f"/v2/{parent}/operations/1")) == (200, operation)
    assert fake.answer(_request("POST", f"/v2/{parent}/jobs/other:run"))[0] == 404


def test_the_container_runs_the_jobs_command_with_the_overrides_after_the_platform(tmp_path):
    fake = FakeRun("dev", tmp_path, {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}, {"FMNIST_X": "1"}, ["/data"])
    override = {"args": ["--model-dir", "gs://m/x"], "env": [{"name": "FMNIST_X", "value": "0"}]}
    command = fake.podman_command(PROMOTION_GATE_JOB, override, tmp_path / "platform.json")
    image = f"localhost/fmnist-trainer:{source_tag('trainer')}"
    job = promotion_job_command("dev", PROMOTION_GATE_JOB)
    assert command[command.index(image) - 2 :] == [
        "--entrypoint",
        json.dumps(job[:1]),
        image,
        *job[1:],
        "--model-dir",
        "gs://m/x",
    ]
    envs = [command[i + 1] for i, word in enumerate(command[: command.index(image)]) if word == "--env"]
    assert envs == [
        "FMNIST_X=1",
        "STORAGE_EMULATOR_HOST=http://127.0.0.1:1",
        "FMNIST_X=0",
    ]  # the override last: it wins
    assert f"{tmp_path / 'platform.json'}:{PLATFORM_ENV_FILE}:ro" in command and "/data:/data" in command
