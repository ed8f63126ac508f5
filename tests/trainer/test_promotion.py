"""Promotion goes through the promoter's jobs (issue 25): the Run Admin API request, the wait, the verdict read
from the signed index, and a job that refuses rules from its environment (tests/infra/test_promoter.py: its command)."""

from __future__ import annotations

import json

import pytest

from contracts.cloud import PROMOTION_APPROVE_JOB, PROMOTION_GATE_JOB
from settings import load_config
from trainer.cloud import promotion
from trainer.errors import CommandError, GateRefused
from trainer.models.registry import ModelRegistry


def test_the_run_request_is_the_documented_one():
    settings = load_config("dev")
    url, body = promotion.run_request(settings, PROMOTION_GATE_JOB, ["--model-dir", "gs://m/jobs/r/model"])
    assert url == (
        f"https://run.googleapis.com/v2/projects/{settings.project_id}/locations/{settings.region}"
        f"/jobs/{PROMOTION_GATE_JOB}:run"
    )
    assert body == {"overrides": {"containerOverrides": [{"args": ["--model-dir", "gs://m/jobs/r/model"]}]}}


class FakeRun:
    """Stands in for the REST session only: jobs.run answers a running operation, operations.get ends it."""

    def __init__(self, polls: int = 2, error: dict | None = None, status: int = 200):
        self.calls: list[tuple[str, str, dict | None]] = []
        self.polls, self.error, self.status = polls, error, status
        self.text = "denied"

    def request(self, method, url, data=None, timeout=None):
        self.calls.append((method, url, None if data is None else json.loads(data)))
        done = method == "GET" and len(self.calls) > self.polls
        reply = {"name": "projects/p/locations/r/operations/op-1", "done": done}
        if done and self.error:
            reply["error"] = self.error
        return type("Reply", (), {"status_code": self.status, "json": lambda _: reply, "text": self.text})()


def test_the_runner_starts_one_execution_and_polls_its_operation_until_done():
    fake = FakeRun(polls=3)
    operation = promotion.JobRunner(load_config("dev"), _session=fake, poll_s=0).run(
        PROMOTION_APPROVE_JOB, ["--version", "v1"]
    )
    assert operation["done"] is True
    assert [c[0] for c in fake.calls] == ["POST", "GET", "GET", "GET"]  # done on the third read
    assert fake.calls[0][2] == {"overrides": {"containerOverrides": [{"args": ["--version", "v1"]}]}}
    assert fake.calls[1][1] == "https://run.googleapis.com/v2/projects/p/locations/r/operations/op-1"


def test_a_refused_execution_names_the_roles_it_needs():
    with pytest.raises(CommandError, match="roles/run.jobsExecutorWithOverrides"):
        promotion.JobRunner(load_config("dev"), _session=FakeRun(status=403), poll_s=0).run(PROMOTION_GATE_JOB, [])
    long = FakeRun(status=403)
    long.text = "d" * 1000  # a long error page: its first 300 characters
    with pytest.raises(CommandError, match=r"HTTP 403 d{300} \(requesters"):
        promotion.JobRunner(load_config("dev"), _session=long, poll_s=0).run(PROMOTION_GATE_JOB, [])


def test_the_verdict_is_read_from_the_index_the_promoter_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    settings = load_config("local")
    registry = ModelRegistry.from_settings(settings)
    version = registry.register({"model.onnx": b"x"}, {"accuracy": 0.9}, "custom", dataset_version=None)
    with pytest.raises(GateRefused, match="did not promote .* execution failed"):
        promotion._champion_after(settings, "job", {"error": {"message": "execution failed"}}, lambda _: version)
    registry.promote(version)
    assert promotion._champion_after(settings, "job", {}, lambda _: version) == 0


def test_a_promotion_job_refuses_settings_from_its_environment():
    image = {"PATH": "/usr/bin", "HOME": "/home/trainer", "PYTHONPATH": "/app", "PYTHONUNBUFFERED": "1"}
    promotion.refuse_overridden_settings({**image, "CLOUD_RUN_JOB": "fmnist-promotion-gate"})
    for name, value in (
        ("FMNIST_REGISTRY__ACCURACY_FLOOR", "0"),
        ("STORAGE_EMULATOR_HOST", "http://attacker:4443"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/tmp/key.json"),
        ("PYTHONPATH", "/tmp"),
        ("PYTHONSTARTUP", "/tmp/x.py"),
        ("LD_PRELOAD", "/tmp/x.so"),
    ):
        with pytest.raises(CommandError, match=name):
            promotion.refuse_overridden_settings({**image, name: value})


def test_registry_promote_on_google_cloud_names_the_promoters_command(capsys):
    from trainer.cli import main

    assert main(["--env", "dev", "registry", "promote", "v20261206-000000-abcd"]) == 1
    assert "promotion approve v20261206-000000-abcd" in capsys.readouterr().err


def _promoted_run(settings, model_dir, run_id: str = "fmnist-train-r1") -> tuple[ModelRegistry, str]:
    """What a promote step's first attempt leaves: the run's model registered (by run id) and made champion, and
    the model directory its training wrote."""
    import storage

    storage.write_text(storage.join(str(model_dir), "training.json"), json.dumps({"run_id": run_id}))
    registry = ModelRegistry.from_settings(settings)
    version = registry.register(
        {"model.onnx": b"x"}, {"accuracy": 0.9}, "custom", dataset_version=None, extra={"run_id": run_id}
    )
    registry.promote(version)
    return registry, version


def test_a_retried_request_on_google_cloud_does_not_execute_the_gate_job_again(gcs_settings, monkeypatch, capsys):
    """Vertex AI Pipelines may retry the promote step: its model is the champion already, so the step succeeds
    without a second execution of the promoter's job (which would fail: 'already the champion')."""
    from trainer.cli import main

    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    model_dir = f"{gcs_settings.models_bucket}/jobs/fmnist-train-r1/model"
    registry, version = _promoted_run(gcs_settings, model_dir)
    before = registry.read_index()
    executions: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(promotion.JobRunner, "run", lambda self, job, args: executions.append((job, args)) or {})
    assert main(["--env", "dev", "promotion", "request", "--model-dir", model_dir]) == 0
    assert executions == [] and registry.read_index() == before
    assert capsys.readouterr().out == (
        f"{version} (run fmnist-train-r1) is already the champion (a retried request): the promoter is not asked\n"
    )


def test_a_retried_request_on_the_local_target_succeeds_and_changes_nothing(tmp_path, monkeypatch, capsys):
    """Locally the gate job runs in-process: the registered model of this run is the champion, nothing to do."""
    from trainer.cli import main

    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    registry, version = _promoted_run(load_config("local"), tmp_path / "model")
    before = registry.read_index()
    assert main(["promotion", "request", "--model-dir", str(tmp_path / "model")]) == 0
    assert registry.read_index() == before
    assert f"{version} is already the champion (a retried request): nothing to do" in capsys.readouterr().out


def test_the_platforms_own_variables_are_told_from_an_executions(tmp_path):
    """The twin's Cloud Run lists what it set in PLATFORM_ENV_FILE (Google's sets nothing there, and an execution's
    overrides cannot add a file): exactly those values pass; the same name with another value, or a setting the
    platform did not set, is still refused."""
    listed = {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443", "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.5"}
    path = tmp_path / "platform-env.json"
    path.write_text(json.dumps(listed))
    platform = promotion.platform_environment(str(path))
    assert platform == listed and promotion.platform_environment(str(tmp_path / "absent.json")) == {}
    promotion.refuse_overridden_settings({"PATH": "/usr/bin", **listed}, platform)
    for name, value in (
        ("STORAGE_EMULATOR_HOST", "http://attacker:4443"),
        ("FMNIST_REGISTRY__PROMOTE_PIPELINE_RUNS", "1"),
    ):
        with pytest.raises(CommandError, match=name):
            promotion.refuse_overridden_settings({**listed, name: value}, platform)


def test_the_run_api_follows_its_emulator_variable(monkeypatch):
    settings = load_config("dev")
    monkeypatch.setenv("RUN_EMULATOR_HOST", "127.0.0.1:8091")
    url, _ = promotion.run_request(settings, PROMOTION_GATE_JOB, [])
    assert (
        url
        == f"http://127.0.0.1:8091/v2/projects/{settings.project_id}/locations/{settings.region}/jobs/{PROMOTION_GATE_JOB}:run"
    )


def test_an_unreachable_run_api_is_a_clear_error():
    import requests

    class Unreachable:
        def request(self, *args, **kwargs):
            raise requests.ConnectionError("Failed to resolve 'run.googleapis.com'")

    runner = promotion.JobRunner(load_config("dev"), _session=Unreachable())
    with pytest.raises(CommandError, match=r"^Cloud Run POST https://run.googleapis.com/v2/.* could not be reached"):
        runner.run(PROMOTION_GATE_JOB, ["--model-dir", "gs://m/jobs/r/model"])
