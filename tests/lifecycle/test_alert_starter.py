"""The local starter decides with the starter function's logic (starter.logic): Alertmanager's repeats of one
incident start one run, a new incident during that run waits in the deferrals file, and the next notification once
the run is over starts one run for it."""

from __future__ import annotations

import json
import sys

from lifecycle.alert_starter import DRIFT_ALERT, Starter


def _payload(starts_at: str, status: str = "firing") -> dict:
    alert = {"status": status, "labels": {"alertname": DRIFT_ALERT, "instance": "i0"}, "startsAt": starts_at}
    return {"version": "4", "status": status, "alerts": [alert]}


def test_repeats_start_one_run_and_a_new_incident_during_it_waits_then_starts(tmp_path):
    gate = tmp_path / "release"
    wait = f"import pathlib, time\nwhile not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)"
    starter = Starter([sys.executable, "-c", wait], tmp_path / "deferred.json")
    try:
        assert starter.notify(_payload("2026-12-06T10:00:00Z", "resolved")) == "nothing firing"
        assert starter.notify(_payload("2026-12-06T10:00:00Z")).startswith("started lifecycle-drift-")
        assert starter.notify(_payload("2026-12-06T10:00:00Z")).startswith("exists")  # a repeat
        assert starter.notify(_payload("2026-12-06T11:00:00Z")).startswith("deferred")  # a new incident
        assert len(starter.runs) == 1
        assert [t["key"] for t in json.loads((tmp_path / "deferred.json").read_text())["triggers"]] == [
            "2026-12-06T11:00:00Z"
        ]
        gate.touch()
        starter.runs[0].wait(timeout=30)
        assert starter.notify(_payload("2026-12-06T11:00:00Z")).startswith("started")
        assert len(starter.runs) == 2 and not (tmp_path / "deferred.json").exists()
    finally:
        gate.touch()
        for run in starter.runs:
            run.wait(timeout=30)
