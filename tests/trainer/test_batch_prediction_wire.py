"""`trainer batch-prediction` through the real aiplatform SDK to the local Vertex AI fake (REST, over the wire),
with the registry and the buckets on the GCS emulator: the request the job is created with, what the command
prints and returns, the gcp_resources it publishes for the pipeline, its wait and its cancellation, and the
input checks that stop it before anything is sent. No model is trained: the champion is an external record."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.vertex_fake import vertex_over_the_wire
from trainer.cli import main
from trainer.cloud import gcp_resources
from trainer.cloud.batch_prediction import build_batch_prediction, job_name, send
from trainer.errors import CommandError


@pytest.fixture
def pngs(gcs_settings):
    """Two PNGs (one spelt .PNG) under incoming/, a text file beside them and a PNG under a sibling prefix."""
    import storage

    root = f"gs://{gcs_settings.bucket_prefix}-datasets"
    for name in ("incoming/b.png", "incoming/a.PNG", "incoming/notes.txt", "incoming-old/c.png"):
        storage.write_bytes(f"{root}/{name}", b"x")
    return f"{root}/incoming"


def _only_job(fake):
    (created,) = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/batchPredictionJobs")]
    (name,) = [k for k in fake.resources if "/batchPredictionJobs/" in k]
    return created.body, name


def test_the_command_creates_the_job_over_the_wire_and_publishes_it(
    gcs_settings, gcs_champion, pngs, tmp_path, monkeypatch, capsys
):
    import storage

    resources = tmp_path / "gcp_resources"
    monkeypatch.setenv(gcp_resources.ENV, str(resources))
    with vertex_over_the_wire(gcs_settings.project_id, gcs_settings.region) as fake:
        assert main(["--env", "dev", "batch-prediction", pngs + "/", "--wait"]) == 0
    body, name = _only_job(fake)
    display = body["displayName"]
    assert re.fullmatch(rf"fmnist-batch-{gcs_champion.lower()}-\d{{8}}-\d{{6}}", display)
    output = f"gs://{gcs_settings.bucket_prefix}-dev/batch-predictions/{display}"
    assert body["labels"] == {"app": "fmnist-mlops", "env": "dev", "component": "batch-prediction"}
    assert body["model"] == f"{gcs_settings.names.parent_model_name}@{gcs_champion}"
    assert body["inputConfig"] == {"instancesFormat": "file-list", "gcsSource": {"uris": [f"{output}/inputs.txt"]}}
    assert body["outputConfig"]["gcsDestination"] == {"outputUriPrefix": output}
    assert body["dedicatedResources"]["startingReplicaCount"] == 1
    assert body["serviceAccount"] == gcs_settings.names.runtime_account("service")
    assert body["encryptionSpec"] == {"kmsKeyName": gcs_settings.names.kms_key_name}
    # sorted, PNGs of this prefix only (not the sibling incoming-old/), whatever the extension's case
    assert storage.read_text(f"{output}/inputs.txt") == f"{pngs}/a.PNG\n{pngs}/b.png\n"
    assert capsys.readouterr().out.splitlines()[-1] == f"Vertex AI batch prediction job {name} writes to {output}"
    assert resources.read_text() == gcp_resources.document("BatchPredictionJob", gcs_settings.region, name)
    assert fake.sent("GET", name), "--wait polls the job until it ends"


def test_a_failed_job_fails_the_command_with_where_its_logs_are(gcs_settings, gcs_champion, pngs, capsys):
    with vertex_over_the_wire(gcs_settings.project_id, gcs_settings.region) as fake:
        fake.job_state = "JOB_STATE_FAILED"
        assert main(["--env", "dev", "batch-prediction", pngs, "--wait"]) != 0
        _, name = _only_job(fake)
    error = capsys.readouterr().err
    assert f"error: Vertex AI batch prediction job {name} did not succeed: " in error
    assert error.rstrip().endswith(". Its logs are in the Vertex AI console (Batch predictions)")


def test_without_wait_the_command_returns_once_the_job_exists(gcs_settings, gcs_champion, pngs):
    with vertex_over_the_wire(gcs_settings.project_id, gcs_settings.region) as fake:
        fake.job_state = "JOB_STATE_FAILED"  # never read: the command does not wait for the end
        assert main(["--env", "dev", "batch-prediction", pngs]) == 0
    assert (
        build_batch_prediction(gcs_settings, "v1", pngs, ["gs://b/x.png"], display_name="j", destination=None).wait
        is False
    )


def test_sigterm_while_waiting_cancels_the_batch_job(gcs_settings, gcs_champion, pngs, monkeypatch, capsys):
    from google.cloud.aiplatform import jobs

    from trainer.cloud.batch_prediction import build_for_source

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.05)
    request = build_for_source(gcs_settings, pngs, "champion", None, display_name="fmnist-batch-t", wait=True)
    with vertex_over_the_wire(gcs_settings.project_id, gcs_settings.region) as fake:
        fake.job_state = "JOB_STATE_RUNNING"
        before = signal.getsignal(signal.SIGTERM)

        def terminate_once_polled():  # as a cancelled run does: SIGTERM while the command waits for its job
            deadline = time.monotonic() + 120
            while signal.getsignal(signal.SIGTERM) is before:  # until the command's handler is in place
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGTERM)

        killer = threading.Thread(target=terminate_once_polled, daemon=True)
        killer.start()
        with pytest.raises(SystemExit) as stopped:
            send(gcs_settings, request)
        killer.join()
        _, name = _only_job(fake)
    assert stopped.value.code == 128 + signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before
    assert fake.summary().count(f"POST {name}:cancel") == 1
    assert f"SIGTERM: cancelling Vertex AI batch prediction job {name}" in capsys.readouterr().err


def test_dry_run_prints_the_request_with_the_given_name_and_destination(gcs_settings, gcs_champion, pngs, capsys):
    argv = ["--env", "dev", "batch-prediction", pngs, "--dry-run", "--display-name", "my-job-1"]
    assert main([*argv, "--destination", "gs://elsewhere/out"]) == 0
    printed = capsys.readouterr().out
    request = json.loads(printed)
    assert printed.startswith('{\n  "init": {\n    "project": ')  # indented for a person to read
    assert request["create"]["job_display_name"] == "my-job-1"
    assert request["create"]["gcs_destination_prefix"] == "gs://elsewhere/out"
    assert main([*argv, "--destination", "relative/out"]) == 0  # not a bucket: the default destination
    default = f"gs://{gcs_settings.bucket_prefix}-dev/batch-predictions/my-job-1"
    assert json.loads(capsys.readouterr().out)["create"]["gcs_destination_prefix"] == default


@pytest.mark.parametrize("name", ["My-Job", "job_1", "-job", "j" * 129])
def test_a_display_name_vertex_would_refuse_is_refused_before_anything_is_read(gcs_settings, name, capsys):
    argv = ["--env", "dev", "batch-prediction", "gs://b/in", "--dry-run", f"--display-name={name}"]
    assert main(argv) != 0
    assert capsys.readouterr().err.strip() == (f"error: --display-name '{name}': use lowercase letters, digits and '-'")


def test_an_empty_prefix_and_a_local_target_are_refused_with_the_fix(gcs_settings, gcs_champion, capsys):
    empty = f"gs://{gcs_settings.bucket_prefix}-datasets/nothing-here"
    assert main(["--env", "dev", "batch-prediction", empty, "--dry-run"]) != 0
    assert capsys.readouterr().err.strip() == f"error: {empty}: no .png objects under this prefix"
    from settings import load_config

    request = build_batch_prediction(
        gcs_settings, "v1", "gs://b/x", ["gs://b/x/1.png"], display_name="j", destination=None
    )
    with pytest.raises(CommandError, match=r"^`batch prediction on Vertex AI` talks to Vertex AI"):
        send(load_config("local", environ={}), request)


def test_job_names_are_lowercase_and_stamped_in_utc(monkeypatch):
    assert job_name("V1.2_x", now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "fmnist-batch-v1-2-x-20260102-030405"
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local-time stamp would differ in its date and hour
    time.tzset()
    try:
        for _ in range(3):  # the hour may turn between the two reads
            before = datetime.now(UTC)
            stamped = job_name("v1")
            if datetime.now(UTC).strftime("%Y%m%d-%H") == before.strftime("%Y%m%d-%H"):
                break
        assert stamped.startswith(f"fmnist-batch-v1-{before:%Y%m%d-%H}")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
