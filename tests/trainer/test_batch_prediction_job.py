"""`trainer batch-prediction` end to end up to the SDK calls: the champion resolved in the GCS registry (the
emulator), the PNG prefix listed into a file list, and --wait reaching the wait for the job's end, which makes the
prediction pipeline's task last as long as its job (without it the run would report success early)."""

import json

import pytest

from trainer.cli import main
from trainer.cloud.batch_prediction import build_for_source, send
from trainer.models.registry import ModelRegistry, register_external_version


@pytest.fixture
def champion(gcs_settings, monkeypatch):
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    registry = ModelRegistry.from_settings(gcs_settings)
    version = register_external_version(gcs_settings, source="custom", metrics={"accuracy": 0.95}, dataset_version="d")
    registry.promote(version)
    return version


@pytest.mark.parametrize("wait", [True, False])
def test_wait_reaches_the_request(gcs_settings, champion, capsys, wait):
    source = f"gs://{gcs_settings.bucket_prefix}-datasets/incoming/instances.jsonl"
    argv = ["--env", "dev", "batch-prediction", source, "--dry-run", *(["--wait"] if wait else [])]
    assert main(argv) == 0
    request = json.loads(capsys.readouterr().out)
    assert request["wait"] is wait and request["create"]["sync"] is False  # published first, then waited for
    assert request["create"]["model_name"].endswith(f"/models/fmnist-classifier@{champion}")


class RecordingSdk:
    """The two aiplatform calls send() makes, recorded with what the bucket held at create time."""

    def __init__(self, file_list_uri: str):
        self.calls: list[tuple[str, dict]] = []
        self.file_list_uri = file_list_uri
        sdk = self

        class BatchPredictionJob:
            @staticmethod
            def create(**kwargs):
                import storage

                sdk.calls.append(("create", {**kwargs, "listed": storage.read_text(sdk.file_list_uri)}))
                return sdk.job

        class Job:
            resource_name = "projects/p/locations/l/batchPredictionJobs/1"

            def wait_for_resource_creation(self):
                sdk.calls.append(("created", {}))

            def wait_for_completion(self):
                sdk.calls.append(("completed", {}))

        self.BatchPredictionJob, self.job = BatchPredictionJob, Job()

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))


def test_send_writes_the_file_list_before_the_job_reads_it_and_waits_for_the_end(gcs_settings, champion):
    import storage

    prefix = f"gs://{gcs_settings.bucket_prefix}-datasets/incoming"
    for name in ("b.png", "a.png", "notes.txt"):
        storage.write_bytes(f"{prefix}/{name}", b"x")
    request = build_for_source(gcs_settings, prefix, "champion", None, display_name="fmnist-batch-t", wait=True)
    sdk = RecordingSdk(request.file_list[0])
    assert send(gcs_settings, request, aiplatform=sdk) is sdk.job
    assert [name for name, _ in sdk.calls] == ["init", "create", "created", "completed"]  # --wait: until it ends
    (_, init_args), (_, create_args) = sdk.calls[:2]
    assert init_args == {"project": gcs_settings.project_id, "location": gcs_settings.region}
    assert create_args["sync"] is False and create_args["gcs_source"] == request.file_list[0]
    assert create_args["listed"] == f"{prefix}/a.png\n{prefix}/b.png\n"  # sorted, PNGs only
