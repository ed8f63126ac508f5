"""The run record (trainer/training/run_record.py) field by field, in-process with a clock the test steps: a new
run, each epoch, the finish, a resume with and without the earlier record (its start kept, the resumes listed, the
caller's history copied), the JSON exactly as written locally, and its content type on a GCS bucket (the emulator).
tests/trainer/test_train.py reads a real training's record; none of these trains."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

import storage
from trainer.training import run_record
from trainer.training.run_record import RunRecord


def at(second: int) -> str:
    return f"2026-12-07T05:00:{second:02d}Z"


@pytest.fixture
def clock(monkeypatch):
    """Each `utc_now()` of the module returns the next second: 00, 01, 02, ..."""
    ticks = (at(s) for s in itertools.count())
    monkeypatch.setattr(run_record, "utc_now", lambda: next(ticks))


def written(path: Path) -> dict:
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True)  # sorted, indented: diffable between saves
    return data


def test_a_new_run_is_running_with_its_params_and_written_only_on_save(tmp_path, clock):
    path = tmp_path / "runs" / "r1" / "run.json"
    record = RunRecord(str(path), "r1", {"epochs": 2, "model": {"width": 16}})
    assert record.uri == str(path)
    assert record.data == {
        "run_id": "r1",
        "started_at": at(0),
        "params": {"epochs": 2, "model": {"width": 16}},
        "status": "running",
        "epochs": [],
        "updated_at": at(1),
    }
    assert not path.exists()
    record.save()
    assert written(path) == {**record.data, "updated_at": at(2)} and record.data["updated_at"] == at(2)


def test_each_epoch_is_appended_and_saved_then_the_finish_completes_it(tmp_path, clock):
    path = tmp_path / "run.json"
    record = RunRecord(str(path), "r2", {"epochs": 2})  # started 00, updated 01
    record.log_epoch(1, {"loss": 0.9, "val_accuracy": 0.7})  # saved at 02
    assert written(path)["epochs"] == [{"epoch": 1, "loss": 0.9, "val_accuracy": 0.7}]
    assert written(path)["updated_at"] == at(2)
    record.log_epoch(2, {"loss": 0.5, "val_accuracy": 0.8})  # saved at 03
    assert written(path)["epochs"] == [
        {"epoch": 1, "loss": 0.9, "val_accuracy": 0.7},
        {"epoch": 2, "loss": 0.5, "val_accuracy": 0.8},
    ]
    record.finish({"test_accuracy": 0.81}, model_dir="m", optimizer_steps=40)  # finished 04, saved 05
    assert written(path) == {
        "run_id": "r2",
        "started_at": at(0),
        "params": {"epochs": 2},
        "status": "completed",
        "epochs": [
            {"epoch": 1, "loss": 0.9, "val_accuracy": 0.7},
            {"epoch": 2, "loss": 0.5, "val_accuracy": 0.8},
        ],
        "final_metrics": {"test_accuracy": 0.81},
        "finished_at": at(4),
        "model_dir": "m",
        "optimizer_steps": 40,
        "updated_at": at(5),
    }


def test_a_resume_keeps_the_earlier_start_and_params_and_lists_each_resume(tmp_path, clock):
    path = tmp_path / "run.json"
    earlier = {"run_id": "r3", "started_at": "2026-12-06T10:00:00Z", "params": {"epochs": 4}, "status": "running",
               "epochs": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}], "updated_at": "2026-12-06T10:05:00Z"}  # fmt: skip
    path.write_text(json.dumps(earlier))
    history = [{"epoch": 1, "val_accuracy": 0.6}, {"epoch": 2, "val_accuracy": 0.7}]  # the checkpoint's epochs
    record = RunRecord(str(path), "r3", {"epochs": 99}, resumed_history=history)  # updated 00, resumed 01
    assert record.data == {
        "run_id": "r3",
        "started_at": "2026-12-06T10:00:00Z",
        "params": {"epochs": 4},
        "status": "running",
        "epochs": history,  # the checkpoint's, not the record's third epoch (lost with the process)
        "updated_at": at(0),
        "resumed_at": [{"epoch": 2, "at": at(1)}],
    }
    record.log_epoch(3, {"val_accuracy": 0.8})  # saved at 02
    assert history == [{"epoch": 1, "val_accuracy": 0.6}, {"epoch": 2, "val_accuracy": 0.7}]  # a copy grew
    again = RunRecord(str(path), "r3", {}, resumed_history=[*history, {"epoch": 3, "val_accuracy": 0.8}])
    assert again.data["resumed_at"] == [{"epoch": 2, "at": at(1)}, {"epoch": 3, "at": at(4)}]
    assert again.data["started_at"] == "2026-12-06T10:00:00Z" and again.data["updated_at"] == at(3)


def test_a_resume_without_an_earlier_record_starts_one_and_an_empty_history_lists_no_resume(tmp_path, clock):
    lost = RunRecord(str(tmp_path / "lost.json"), "r4", {"epochs": 3}, resumed_history=[{"epoch": 1}])
    assert lost.data == {
        "run_id": "r4",
        "started_at": at(0),
        "params": {"epochs": 3},
        "status": "running",
        "epochs": [{"epoch": 1}],
        "updated_at": at(1),
        "resumed_at": [{"epoch": 1, "at": at(2)}],
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run_id": "r5", "started_at": "s", "params": {"p": 1}, "epochs": [{"epoch": 1}]}))
    empty = RunRecord(str(path), "r5", {"p": 2}, resumed_history=[])  # read, nothing resumed
    assert empty.data == {"run_id": "r5", "started_at": "s", "params": {"p": 1}, "status": "running", "epochs": [],
                          "updated_at": at(3)}  # fmt: skip
    fresh = RunRecord(str(path), "r5", {"p": 3})  # not a resume: the earlier record is not read
    assert fresh.data["params"] == {"p": 3} and fresh.data["started_at"] == at(4)


def test_an_unreadable_earlier_record_is_an_error_not_a_fresh_start(tmp_path, clock):
    path = tmp_path / "run.json"
    path.write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        RunRecord(str(path), "r6", {}, resumed_history=[{"epoch": 1}])


def test_on_a_bucket_the_record_is_json_by_content_type(gcs_bucket, clock):
    uri = f"{gcs_bucket}/runs/r7/run.json"
    record = RunRecord(uri, "r7", {"epochs": 1})
    record.log_epoch(1, {"val_accuracy": 0.5})
    blob = storage.gcs_client().bucket(gcs_bucket.removeprefix("gs://")).get_blob("runs/r7/run.json")
    assert blob.content_type == "application/json"
    assert json.loads(blob.download_as_text())["epochs"] == [{"epoch": 1, "val_accuracy": 0.5}]
    assert RunRecord(uri, "r7", {}, resumed_history=[{"epoch": 1}]).data["started_at"] == at(0)  # read back
