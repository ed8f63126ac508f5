"""The gcp_resources a pipeline task publishes and the SIGTERM that cancels its job (trainer/cloud/gcp_resources.py),
value by value: the document Vertex AI Pipelines reads to cancel the job (a wrong URI or field name leaves a
cancelled run's job billing), where and when it is written, and the handler's cancel, message and exit code."""

from __future__ import annotations

import json
import signal
import sys
import threading
import weakref

import pytest

from trainer.cloud import gcp_resources
from trainer.cloud.gcp_resources import cancel_on_sigterm, document, publish, resource_uri

JOB = "projects/123/locations/europe-west4/batchPredictionJobs/456"


class Job:
    resource_name = JOB

    def __init__(self) -> None:
        self.cancelled = 0

    def cancel(self) -> None:
        self.cancelled += 1


def test_the_document_is_the_pipeline_components_gcp_resources_json():
    assert resource_uri("europe-west4", JOB) == f"https://europe-west4-aiplatform.googleapis.com/v1/{JOB}"
    assert document("BatchPredictionJob", "europe-west4", JOB) == (
        '{"resources": [{"resourceType": "BatchPredictionJob", "resourceUri": '
        f'"https://europe-west4-aiplatform.googleapis.com/v1/{JOB}"}}]}}'
    )
    assert (gcp_resources.ENV, gcp_resources.PARAMETER) == ("FMNIST_GCP_RESOURCES", "gcp_resources")


def test_publish_writes_the_file_the_variable_names_creating_its_folders(tmp_path):
    target = tmp_path / "outputs" / "task" / "gcp_resources"
    publish("CustomJob", "us-central1", Job(), environ={gcp_resources.ENV: str(target)})
    assert target.read_text() == document("CustomJob", "us-central1", JOB)
    name = "projects/1/locations/us-central1/customJobs/2"
    publish("CustomJob", "us-central1", name, {gcp_resources.ENV: str(target)})  # a name, not an SDK job
    assert json.loads(target.read_text())["resources"] == [
        {"resourceType": "CustomJob", "resourceUri": f"https://us-central1-aiplatform.googleapis.com/v1/{name}"}
    ]


def test_outside_a_pipeline_nothing_is_written_and_the_job_is_not_read(tmp_path, monkeypatch):
    class Unread:
        @property
        def resource_name(self):
            raise AssertionError("the job was read outside a pipeline")

    monkeypatch.chdir(tmp_path)
    publish("CustomJob", "europe-west4", Unread(), environ={})
    publish("CustomJob", "europe-west4", Unread(), environ={gcp_resources.ENV: ""})
    monkeypatch.delenv(gcp_resources.ENV, raising=False)
    publish("CustomJob", "europe-west4", Unread())
    assert list(tmp_path.iterdir()) == []


def test_publish_reads_the_process_environment_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv(gcp_resources.ENV, str(tmp_path / "gcp_resources"))
    publish("BatchPredictionJob", "europe-west4", JOB)
    assert (tmp_path / "gcp_resources").read_text() == document("BatchPredictionJob", "europe-west4", JOB)


def test_sigterm_while_waiting_cancels_the_job_says_so_and_exits_143_then_the_old_handler_is_back(capsys):
    before = signal.getsignal(signal.SIGTERM)
    job = Job()
    with pytest.raises(SystemExit) as stopped, cancel_on_sigterm(job, "Vertex AI custom job"):
        handler = signal.getsignal(signal.SIGTERM)
        assert handler is not before
        handler(signal.SIGTERM, None)
    assert stopped.value.code == 143
    assert job.cancelled == 1
    assert signal.getsignal(signal.SIGTERM) is before
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"SIGTERM: cancelling Vertex AI custom job {JOB}\n")


@pytest.mark.parametrize("then", ["job failed", "returns"])
def test_a_sigterm_inside_a_finaliser_still_ends_the_block_in_exit_143(then, capsys, monkeypatch):
    """Python ignores an exception raised in a finaliser, the handler's SystemExit too (seen in CI: the signal ran in
    the garbage collector's close of urllib3's pooled connections): the wait then goes on, sees the cancelled job and
    raises, or returns; either way the command exits 143 and the old handler is back."""
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: ignored.append(unraisable.exc_value))
    before = signal.getsignal(signal.SIGTERM)
    job = Job()

    class Pool:
        pass

    with pytest.raises(SystemExit) as stopped, cancel_on_sigterm(job, "job"):
        pool = Pool()
        weakref.finalize(pool, signal.getsignal(signal.SIGTERM), signal.SIGTERM, None)
        del pool  # freed at once: the handler runs inside the finaliser, and its exit is ignored
        assert [type(e) for e in ignored] == [SystemExit] and job.cancelled == 1
        if then == "job failed":
            raise RuntimeError("Job failed with:\n")
    assert stopped.value.code == 143 and stopped.value.__cause__ is None
    assert job.cancelled == 1 and signal.getsignal(signal.SIGTERM) is before
    assert capsys.readouterr().err == f"SIGTERM: cancelling job {JOB}\n"


def test_a_cancel_that_fails_is_said_and_the_exit_is_still_143(capsys):
    class Unreachable(Job):
        def cancel(self) -> None:
            raise ConnectionError("aiplatform.googleapis.com unreachable")

    with pytest.raises(SystemExit) as stopped, cancel_on_sigterm(Unreachable(), "job"):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert stopped.value.code == 143
    assert capsys.readouterr().err == (
        f"SIGTERM: cancelling job {JOB}\nSIGTERM: could not cancel job {JOB}: aiplatform.googleapis.com unreachable\n"
    )


def test_an_error_without_sigterm_passes_through_unchanged():
    before = signal.getsignal(signal.SIGTERM)
    job = Job()
    with pytest.raises(RuntimeError, match="^Job failed$"), cancel_on_sigterm(job, "job"):
        raise RuntimeError("Job failed")
    assert job.cancelled == 0 and signal.getsignal(signal.SIGTERM) is before


def test_a_block_that_ends_puts_the_old_handler_back_and_cancels_nothing():
    before = signal.getsignal(signal.SIGTERM)
    job = Job()
    with cancel_on_sigterm(job, "job"):
        pass
    assert signal.getsignal(signal.SIGTERM) is before and job.cancelled == 0


def test_off_the_main_thread_the_block_runs_without_a_handler():
    """Only the main thread may set a signal handler: elsewhere the wait runs as it is, with no error."""
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def wait() -> None:
        try:
            with cancel_on_sigterm(Job(), "job"):
                seen.append(signal.getsignal(signal.SIGTERM))
            seen.append("ended")
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever escaped
            seen.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(10)
    assert seen == [before, "ended"]
    assert signal.getsignal(signal.SIGTERM) is before
