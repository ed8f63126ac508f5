"""`trainer promotion request|approve` as a user (or the pipeline's promote step) runs them on Google Cloud: the Run
Admin API request over the wire to the twin's Cloud Run, the operation polled until done, the verdict read from the
registry on fake-gcs-server, the exit status and the line printed. The execution itself (the promoter's job in the
trainer image, `make twin-gcp`) is stood in for by what it leaves in the index; the job actions' own refusals and
the local target's in-process path are at the end."""

from __future__ import annotations

import functools
import json

import pytest

import storage
from contracts.cloud import PROMOTION_APPROVE_JOB, PROMOTION_GATE_JOB
from settings import load_config
from trainer import cli
from trainer.cloud import endpoints, promotion
from trainer.errors import CommandError
from trainer.models.registry import ModelRegistry
from twin import metadata, run

RUN_ID = "fmnist-train-r7"


@pytest.fixture
def cloud(gcs_settings, tmp_path, monkeypatch):
    """The dev config the CLI loads (buckets on fake-gcs-server), the twin's Cloud Run as RUN_EMULATOR_HOST and
    credentials from its metadata server; `cloud.job` is what the next execution does to the registry."""
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    # the runner polls every 10 s on Google Cloud; here the stand-in execution ends at once
    monkeypatch.setattr(promotion, "JobRunner", functools.partial(promotion.JobRunner, poll_s=0))
    registry = ModelRegistry.from_settings(gcs_settings)
    registry.paired_gate = None  # the promoter's gate is the job's business; here only its outcome matters

    with (
        metadata.serve(gcs_settings.project_id, "pipelines@x.iam.gserviceaccount.com") as meta,
        run.serve("dev", tmp_path, {}) as fake,
    ):
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(meta.service_account_file(tmp_path / "sa.json")))
        monkeypatch.setenv(endpoints.RUN, fake.endpoint)
        executed: list[tuple[str, dict]] = []

        def execute(name, job, override, outcome):
            executed.append((job, override))
            result: dict = {"name": name, "done": True}
            error = outcome(override["args"])
            if error:
                result["error"] = {"code": 2, "message": error}
            with fake._lock:
                fake.operations[name] = result

        fake.outcome = lambda args: None
        monkeypatch.setattr(fake, "_execute", lambda name, job, override: execute(name, job, override, fake.outcome))
        fake.executed = executed
        fake.metadata = meta
        fake.registry = registry
        fake.models_bucket = gcs_settings.models_bucket
        fake.registry_prefix = gcs_settings.bucket_prefix
        yield fake


def _register(registry, run_id: str = RUN_ID) -> str:
    return registry.register(
        {"model.onnx": run_id.encode()}, {"accuracy": 0.9}, "custom", dataset_version=None, extra={"run_id": run_id}
    )


def _runs(fake) -> list[tuple[str, str, str, dict]]:
    return [(r.method, r.path, r.verb, r.body) for r in fake.requests]


def test_approve_executes_the_approval_job_with_the_version_and_reports_the_new_champion(cloud, capsys):
    version = _register(cloud.registry)

    def promotes(args):
        assert args == ["--version", version]
        cloud.registry.promote(version)

    cloud.outcome = promotes
    assert cli.main(["--env", "dev", "promotion", "approve", version]) == 0
    assert capsys.readouterr().out == f"the promoter made {version} champion ({PROMOTION_APPROVE_JOB})\n"
    parent = "projects/fmnist-mlops-dev/locations/europe-west4"
    (post, *gets) = _runs(cloud)
    assert post == (
        "POST",
        f"{parent}/jobs/{PROMOTION_APPROVE_JOB}",
        "run",
        {"overrides": {"containerOverrides": [{"args": ["--version", version]}]}},
    )
    assert gets and all(g == ("GET", f"{parent}/operations/1", "", {}) for g in gets)  # a poll sends no body
    assert all(r.authorization.startswith("Bearer ") for r in cloud.requests)  # Google's credentials, every call


def test_an_approval_the_promoter_refused_exits_3_with_its_error_and_the_index_unchanged(cloud, capsys):
    version = _register(cloud.registry)
    before = cloud.registry.read_index()
    cloud.outcome = lambda args: "approve-job exited 3: promotion refused: accuracy 0.9 below the floor"
    assert cli.main(["--env", "dev", "promotion", "approve", version]) == 3
    assert (
        f"error: the promoter did not promote {version} ({PROMOTION_APPROVE_JOB}: approve-job exited 3: promotion "
        "refused: accuracy 0.9 below the floor); its gate report is under registry/gate-reports/ in the models bucket"
    ) in capsys.readouterr().err.splitlines()
    assert cloud.registry.read_index() == before


def test_a_request_executes_the_gate_job_and_finds_its_runs_model_as_champion(cloud, capsys):
    """The pipeline's promote step: the promoter registers the run's model itself; the requester finds it by the
    training run id in the model directory and reads whether it is the champion now."""
    model_dir = f"{cloud.models_bucket}/jobs/{RUN_ID}/model"
    storage.write_text(storage.join(model_dir, "training.json"), json.dumps({"run_id": RUN_ID}))
    champion = _register(cloud.registry, "fmnist-train-r6")  # an older run's model is the champion
    cloud.registry.promote(champion)
    made: list[str] = []

    def registers_and_promotes(args):
        assert args == ["--model-dir", model_dir]
        _register(cloud.registry, "fmnist-train-r8")  # another run registered meanwhile: not this one's
        made.append(_register(cloud.registry))
        cloud.registry.promote(made[0])

    cloud.outcome = registers_and_promotes
    assert cli.main(["--env", "dev", "promotion", "request", "--model-dir", model_dir]) == 0
    assert capsys.readouterr().out == f"the promoter made {made[0]} champion ({PROMOTION_GATE_JOB})\n"
    assert [(job, override) for job, override in cloud.executed] == [
        (PROMOTION_GATE_JOB, {"args": ["--model-dir", model_dir]})
    ]


def test_a_request_whose_job_promoted_nothing_exits_3(cloud, capsys):
    model_dir = f"{cloud.models_bucket}/jobs/{RUN_ID}/model"
    storage.write_text(storage.join(model_dir, "training.json"), json.dumps({"run_id": RUN_ID}))
    champion = _register(cloud.registry, "fmnist-train-r6")
    cloud.registry.promote(champion)
    version: list[str] = []
    cloud.outcome = lambda args: version.append(_register(cloud.registry))  # registered, gated, not promoted
    assert cli.main(["--env", "dev", "promotion", "request", "--model-dir", model_dir]) == 3
    assert (
        f"error: the promoter did not promote {version[0]} ({PROMOTION_GATE_JOB}: finished without promoting); "
        "its gate report is under registry/gate-reports/ in the models bucket"
    ) in capsys.readouterr().err.splitlines()
    assert cloud.registry.read_index().alias("champion") == champion


def test_a_job_that_never_ends_is_an_error_after_the_wait_limit(cloud, monkeypatch):
    monkeypatch.setattr(cloud, "_execute", lambda name, job, override: None)  # the operation stays running
    monkeypatch.setattr(promotion, "WAIT_LIMIT_S", 0.0)
    with pytest.raises(CommandError) as refused:
        promotion.JobRunner(load_config("dev")).run(PROMOTION_APPROVE_JOB, ["--version", "v1"])
    name = "projects/fmnist-mlops-dev/locations/europe-west4/operations/1"
    assert str(refused.value) == f"{PROMOTION_APPROVE_JOB} execution {name} still runs after 0 s"


def test_a_refused_run_names_the_status_the_reply_and_the_roles(cloud):
    with pytest.raises(CommandError) as refused:
        promotion.JobRunner(load_config("dev")).run("fmnist-other-job", [])
    url = f"{cloud.endpoint}/v2/projects/fmnist-mlops-dev/locations/europe-west4/jobs/fmnist-other-job:run"
    path = "projects/fmnist-mlops-dev/locations/europe-west4/jobs/fmnist-other-job"
    reply = json.dumps({"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}})
    assert str(refused.value) == (
        f"Cloud Run POST {url} failed: HTTP 404 {reply[:300]} (requesters need roles/run.jobsExecutorWithOverrides "
        "and roles/run.viewer on the job: infra/components/promoter.py)"
    )


# ---- the job actions: who may set the promoter's rules ---------------------------------------------------------


@pytest.mark.parametrize(
    "action", [["gate-job", "--model-dir", "gs://m/jobs/r/model"], ["approve-job", "--version", "v1"]]
)
def test_a_promotion_job_on_google_cloud_refuses_an_overridden_setting_before_anything_else(
    action, monkeypatch, capsys
):
    monkeypatch.setenv("FMNIST_REGISTRY__PROMOTE_PIPELINE_RUNS", "true")
    assert cli.main(["--env", "dev", "promotion", *action]) == 1
    err = capsys.readouterr().err
    assert "the promoter refuses these variables in its environment (" in err
    assert "FMNIST_REGISTRY__PROMOTE_PIPELINE_RUNS" in err
    assert "its rules come from config/<env>.yaml in its image; execute the job with --args only" in err


def test_the_refusal_lists_every_overridden_variable_in_order_and_nothing_the_image_set():
    image = {
        "HOME": "/home/trainer",
        "CLOUD_RUN_EXECUTION": "x",
        **promotion.IMAGE_PYTHON_ENV,
    }
    promotion.refuse_overridden_settings(image, {})  # the image's own environment passes
    overridden = {
        "PYTHONHASHSEED": "0",
        "AIP_STORAGE_URI": "gs://x",
        "CLOUDSDK_CORE_PROJECT": "other",
        "GOOGLE_CLOUD_PROJECT": "other",
        "PYTHONUNBUFFERED": "0",
        "LD_LIBRARY_PATH": "/tmp",
    }
    with pytest.raises(CommandError) as refused:
        promotion.refuse_overridden_settings({**image, **overridden}, {})
    assert str(refused.value) == (
        "the promoter refuses these variables in its environment (AIP_STORAGE_URI, CLOUDSDK_CORE_PROJECT, "
        "GOOGLE_CLOUD_PROJECT, LD_LIBRARY_PATH, PYTHONHASHSEED, PYTHONUNBUFFERED): its rules come from "
        "config/<env>.yaml in its image; execute the job with --args only"
    )


def test_the_platform_file_is_read_from_where_the_twins_cloud_run_mounts_it():
    assert promotion.PLATFORM_ENV_FILE == run.PLATFORM_ENV_FILE == "/etc/fmnist/platform-env.json"


def test_pipeline_runs_await_approval_on_google_cloud_unless_the_config_lets_them_promote():
    assert promotion.awaits_approval(load_config("dev", environ={})) is True
    allowed = load_config("dev", environ={"FMNIST_REGISTRY__PROMOTE_PIPELINE_RUNS": "true"})
    assert promotion.awaits_approval(allowed) is False
    assert promotion.awaits_approval(load_config("local", environ={})) is False  # one user: nobody else approves


def test_approve_on_the_local_target_promotes_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setenv("FMNIST_REGISTRY__PAIRED_GATE", "false")  # two fake models: the gate has nothing to score
    registry = ModelRegistry.from_settings(load_config("local"))
    first = _register(registry, "r1")
    assert cli.main(["promotion", "approve", first]) == 0
    assert capsys.readouterr().out == f"promoted {first} to champion (was none)\n"
    assert registry.read_index().alias("champion") == first
    second = _register(registry, "r2")
    assert cli.main(["promotion", "approve-job", "--version", second]) == 0
    assert capsys.readouterr().out == f"promoted {second} to champion (was {first})\n"


@pytest.fixture
def exported(monkeypatch):
    """Stands in for export's register (tested in tests/trainer/test_export*.py): registers the model directory's
    run and returns export's summary; records how it was asked."""
    from trainer.models import export

    calls: list[tuple[str, bool]] = []

    def export_model_dir(settings, model_dir, register):
        calls.append((model_dir, register))
        version = _register(ModelRegistry.from_settings(settings), model_dir.rsplit("/", 1)[-1])
        return {"model_version": version}

    monkeypatch.setattr(export, "export_model_dir", export_model_dir)
    return calls


def test_a_local_request_registers_the_model_and_promotes_it_in_process(tmp_path, monkeypatch, capsys, exported):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setenv("FMNIST_REGISTRY__PAIRED_GATE", "false")
    assert cli.main(["promotion", "request", "--model-dir", str(tmp_path / "run-1")]) == 0
    registry = ModelRegistry.from_settings(load_config("local"))
    champion = registry.read_index().alias("champion")
    assert capsys.readouterr().out == f"promoted {champion} to champion (was none)\n"
    assert exported == [(str(tmp_path / "run-1"), True)]  # the promoter registers it: export re-verifies it


def test_the_gate_job_promotes_the_model_it_registered_not_the_newest_candidate(tmp_path, monkeypatch, capsys):
    """Two pipeline runs may register at once: the job promotes the version its own export registered, even when
    another run's registration moved the candidate alias after it."""
    from trainer.models import export

    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setenv("FMNIST_REGISTRY__PAIRED_GATE", "false")
    registry = ModelRegistry.from_settings(load_config("local"))
    ours: list[str] = []
    asked: list[tuple[str, bool]] = []

    def export_model_dir(settings, model_dir, register):
        asked.append((model_dir, register))
        ours.append(_register(registry, "r1"))
        _register(registry, "r2")  # the other run's model, registered just after: the candidate now
        return {"model_version": ours[0]}

    monkeypatch.setattr(export, "export_model_dir", export_model_dir)
    assert cli.main(["promotion", "gate-job", "--model-dir", str(tmp_path / "r1")]) == 0
    assert asked == [(str(tmp_path / "r1"), True)]  # the directory the job was given, registered by export
    assert registry.read_index().alias("champion") == ours[0]
    assert capsys.readouterr().out == f"promoted {ours[0]} to champion (was none)\n"


def test_the_gate_job_on_google_cloud_leaves_a_pipeline_runs_model_awaiting_approval(
    gcs_settings, monkeypatch, exported
):
    """Inside the promoter's job (its platform's variables listed, as Cloud Run's twin lists them): the model is
    registered and gated, and with promote_pipeline_runs off it waits for an approver (exit 3), not promoted."""
    import os

    from trainer.errors import GateRefused

    monkeypatch.setenv("FMNIST_REGISTRY__PAIRED_GATE", "false")
    listed = {k: v for k, v in os.environ.items() if k.startswith(promotion.UNTRUSTED_ENV) or k.startswith("PYTHON")}
    monkeypatch.setattr(promotion, "platform_environment", lambda: listed)
    registry = ModelRegistry.from_settings(gcs_settings)
    champion = _register(registry, "r0")
    registry.promote(champion)
    settings = load_config("dev", environ={"FMNIST_BUCKET_PREFIX": gcs_settings.bucket_prefix, **os.environ})
    with pytest.raises(GateRefused, match="awaits approval"):
        promotion.gate_job(settings, f"{gcs_settings.models_bucket}/jobs/r1/model")
    index = registry.read_index()
    assert index.alias("champion") == champion and index.events[-1]["action"] == "awaiting_approval"
    monkeypatch.setenv("FMNIST_X", "1")  # an execution's override: refused before export is asked
    with pytest.raises(CommandError, match=r"\(FMNIST_X\)"):
        promotion.gate_job(settings, f"{gcs_settings.models_bucket}/jobs/r2/model")
    assert len(exported) == 1


def test_the_image_python_variables_are_the_trainer_images_own():
    """What the promoter lets through under PYTHON* is exactly what trainer/Dockerfile sets: any other value came
    from an execution's override."""
    import re
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parents[2] / "trainer" / "Dockerfile").read_text()
    declared = dict(re.findall(r"\b(PYTHON[A-Z_]+)=(\S+)", dockerfile))
    assert declared == promotion.IMAGE_PYTHON_ENV


def test_the_requester_waits_a_little_longer_than_the_job_may_run_and_polls_every_10_s():
    from infra.components.promoter import JOB_TIMEOUT

    assert 0 < promotion.WAIT_LIMIT_S - float(JOB_TIMEOUT.removesuffix("s")) <= 600
    assert promotion.JobRunner(load_config("dev")).poll_s == promotion.POLL_S == 10.0


def test_a_request_whose_run_registered_nothing_says_the_model_was_not_promoted(cloud, capsys):
    model_dir = f"{cloud.models_bucket}/jobs/{RUN_ID}/model"
    storage.write_text(storage.join(model_dir, "training.json"), json.dumps({"run_id": RUN_ID}))
    cloud.outcome = lambda args: "gate-job exited 1: the model directory has no model.keras"
    assert cli.main(["--env", "dev", "promotion", "request", "--model-dir", model_dir]) == 3
    assert (
        f"error: the promoter did not promote the model ({PROMOTION_GATE_JOB}: gate-job exited 1: the model directory "
        "has no model.keras); its gate report is under registry/gate-reports/ in the models bucket"
    ) in capsys.readouterr().err.splitlines()


def test_approve_without_a_runner_starts_its_own(cloud, capsys):
    """What `trainer rollout` calls on Google Cloud."""
    version = _register(cloud.registry)
    cloud.outcome = lambda args: cloud.registry.promote(version) and None
    assert promotion.approve(load_config("dev", environ={"FMNIST_BUCKET_PREFIX": cloud.registry_prefix}), version) == 0
    assert [job for job, _ in cloud.executed] == [PROMOTION_APPROVE_JOB]


def test_promotion_without_an_action_is_a_usage_error_naming_the_four(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["promotion"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "{request,approve,gate-job,approve-job}" in err
    assert err.endswith("error: the following arguments are required: action\n")


@pytest.mark.parametrize("action, option", [("gate-job", "--model-dir"), ("approve-job", "--version")])
def test_a_promotion_job_without_its_one_argument_is_a_usage_error(action, option, capsys):
    """An execution whose --args forgot the model directory or the version stops at the usage, before any gate."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["promotion", action])
    assert exited.value.code == 2
    assert capsys.readouterr().err.endswith(f"error: the following arguments are required: {option}\n")


def test_every_call_to_cloud_run_gives_up_after_60_s(cloud):
    """A Run API that stops answering must not hold the pipeline's promote step forever: each call has a timeout."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    timeouts: list[object] = []

    class Recorded(AuthorizedSession):
        def request(self, method, url, *args, **kwargs):
            timeouts.append(kwargs.get("timeout"))
            return super().request(method, url, *args, **kwargs)

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    runner = promotion.JobRunner(load_config("dev"), Recorded(credentials), poll_s=0)
    runner.run(PROMOTION_APPROVE_JOB, ["--version", "v1"])
    assert timeouts and set(timeouts) == {60}


def test_the_requester_asks_google_for_a_cloud_platform_token(cloud):
    """The token grant names the cloud-platform scope: a service-account key without it gets no token from Google."""
    promotion.JobRunner(load_config("dev"), poll_s=0).run(PROMOTION_APPROVE_JOB, ["--version", "v1"])
    assert cloud.metadata.scopes == ["https://www.googleapis.com/auth/cloud-platform"]
