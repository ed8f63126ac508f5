"""trainer.errors and trainer.clock exactly (issue 27's trainer-errors group): the exit statuses pipelines tell apart,
the structured log line Cloud Logging's alert policies match, and the one timestamp format every record carries."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from trainer import errors
from trainer.clock import utc_now


def test_a_refused_gate_exits_3_and_every_other_failure_1():
    assert errors.CommandError("x").exit_code == 1
    for kind in (errors.DatasetError, errors.ModelDirError, errors.RegistryError):
        assert issubclass(kind, errors.CommandError) and kind("x").exit_code == 1
    assert issubclass(errors.GateRefused, errors.RegistryError)  # caught where a registry change is refused
    assert errors.GateRefused("worse").exit_code == 3


def test_the_cli_turns_a_refusal_into_its_exit_status_and_alert_line(monkeypatch, capsys, tmp_path):
    from trainer import cli

    def refuse(_args, _settings):
        raise errors.GateRefused("the candidate is worse: 0.91 < 0.92")

    def fail(_args, _settings):
        raise errors.ModelDirError("no training.json")

    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path))
    for run, status in ((refuse, 3), (fail, 1)):  # only the command's own run is replaced
        monkeypatch.setattr(cli._load(cli.COMMANDS["registry"]), "run", run)
        assert cli.main(["--env", "local", "registry", "list"]) == status
    refused, failed = capsys.readouterr().err.split("error: no training.json\n")
    assert refused.startswith("error: the candidate is worse: 0.91 < 0.92\n")
    assert json.loads(refused.splitlines()[1])["severity"] == "WARNING" and failed == ""


def test_an_event_is_one_json_line_on_stderr(capsys):
    errors.log_event("gate_refused", "worse than the champion", run_id="r-1", model=Path("m/model.onnx"))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1
    assert json.loads(captured.err) == {
        "severity": "ERROR",
        "message": "worse than the champion",
        "event": "gate_refused",
        "component": "trainer",
        "run_id": "r-1",
        "model": "m/model.onnx",  # any value is written as text rather than failing the log line
    }
    errors.log_event("pipeline_failed", "m", severity="WARNING")
    assert json.loads(capsys.readouterr().err) == {
        "severity": "WARNING",
        "message": "m",
        "event": "pipeline_failed",
        "component": "trainer",
    }


def test_the_line_is_out_before_the_process_could_die(monkeypatch):
    """A block-buffered stderr (a logging wrapper's) would hold the failure's line until exit: a killed step's alert
    line would never reach Cloud Logging."""
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(io.BufferedWriter(sink, 1 << 16), encoding="utf-8"))
    errors.log_event("pipeline_step_failed", "step failed")
    assert json.loads(sink.getvalue())["event"] == "pipeline_step_failed"


def test_timestamps_are_utc_to_the_second_with_a_z():
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = utc_now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
    assert before <= datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= after
