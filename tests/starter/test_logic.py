"""The starter's decision on its own, in-process (runs in memory, deferrals in a file): the rules that
tests/starter/test_function.py checks over the wire, each one alone, fast enough for mutation testing."""

from __future__ import annotations

import hashlib

import pytest

from contracts.starter import DEFERRED, DRIFT, NEW_DATA, SCHEDULE
from starter.deferrals import FileDeferrals
from starter.events import Trigger
from starter.logic import Outcome, decide, run_id


class Runs:
    """Vertex AI Pipelines in memory: run id -> active?"""

    def __init__(self) -> None:
        self.runs: dict[str, bool] = {}
        self.labels: dict[str, dict[str, str]] = {}

    def active(self) -> list[str]:
        return [r for r, running in reversed(self.runs.items()) if running]

    def start(self, run: str, labels: dict[str, str]) -> bool:
        if run in self.runs:
            return False
        self.runs[run], self.labels[run] = True, labels
        return True

    def exists(self, run: str) -> bool:
        return run in self.runs


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def deferrals(tmp_path) -> FileDeferrals:
    return FileDeferrals(tmp_path / "deferred.json")


NEW = Trigger(NEW_DATA, "1765015200123456", "upload")
SWEEP = Trigger(DEFERRED, "202612070430")


def test_run_ids_are_the_event_s_and_valid_pipeline_job_ids():
    assert run_id("fmnist-lifecycle", NEW) == "fmnist-lifecycle-new-data-1765015200123456"
    assert run_id("p", Trigger(DRIFT, "0.AbC_x")) == "p-drift-0-abc-x"
    assert run_id("p", Trigger(DRIFT, "x" * 40)) == f"p-drift-{'x' * 40}"  # 40 characters: kept as it is
    long = run_id("p", Trigger(DRIFT, "x" * 41))
    assert long == f"p-drift-{hashlib.sha256(b'x' * 41).hexdigest()[:16]}"
    assert run_id("p", Trigger(DRIFT, "!!!")).startswith("p-drift-") and len(run_id("p", Trigger(DRIFT, "!!!"))) == 24
    assert len(run_id("p" * 200, NEW)) == 128


def test_no_active_run_starts_one_labelled_with_its_trigger(runs, deferrals):
    outcome = decide(NEW, runs, deferrals, "p")
    assert (outcome.action, outcome.run) == ("started", "p-new-data-1765015200123456")
    assert outcome.reason == "new-data upload"
    assert runs.labels[outcome.run] == {"trigger": NEW_DATA}


def test_the_same_event_again_starts_nothing_running_or_finished(runs, deferrals):
    first = decide(NEW, runs, deferrals, "p")
    running = Outcome("exists", first.run, "this event's run is running (a redelivered event)")
    assert decide(NEW, runs, deferrals, "p") == running
    runs.runs[first.run] = False
    before = Outcome("exists", first.run, "this event's run was started before (a redelivered event)")
    assert decide(NEW, runs, deferrals, "p") == before
    runs.runs["other"] = True  # another run is active: the old event is still not a new trigger
    assert decide(NEW, runs, deferrals, "p") == before
    assert deferrals.pending() == [] and len(runs.runs) == 2


def test_a_trigger_during_a_run_waits_once_and_the_next_start_takes_it(runs, deferrals):
    runs.runs["running"] = True
    drift = Trigger(DRIFT, "0.inc", "opened")
    outcome = decide(drift, runs, deferrals, "p")
    assert (outcome.action, outcome.run) == ("deferred", "running")
    assert outcome.reason == "running is active: drift starts a run after it"
    decide(drift, runs, deferrals, "p")
    assert deferrals.pending() == [drift]
    assert decide(SWEEP, runs, deferrals, "p") == Outcome(  # still active: the sweep waits too
        "deferred", "running", "running is active: drift starts a run after it"
    )
    assert deferrals.pending() == [drift] and list(runs.runs) == ["running"]
    runs.runs["running"] = False
    schedule = Trigger(SCHEDULE, "202612070400", "weekly")
    started = decide(schedule, runs, deferrals, "p")  # a new trigger covers what waited
    assert started.action == "started" and started.reason == "schedule weekly; it covers 1 deferred trigger(s)"
    assert runs.labels[started.run] == {"trigger": SCHEDULE, "deferred": "1"}
    assert deferrals.pending() == []


def test_the_sweep_starts_one_run_for_everything_that_waited_and_nothing_when_nothing_did(runs, deferrals):
    nothing = Outcome("nothing-deferred", "", "no trigger waits")
    assert decide(SWEEP, runs, deferrals, "p") == nothing
    assert nothing.as_json() == {"action": "nothing-deferred", "run": "", "reason": "no trigger waits"}
    assert runs.runs == {}
    runs.runs["running"] = True
    decide(Trigger(DRIFT, "a"), runs, deferrals, "p")
    decide(NEW, runs, deferrals, "p")
    runs.runs["running"] = False
    outcome = decide(SWEEP, runs, deferrals, "p")
    key = "+".join(sorted(["drift:a", f"new-data:{NEW.key}"]))
    assert outcome == Outcome(
        "started", run_id("p", Trigger(DRIFT, key)), "drift deferred; it covers 2 deferred trigger(s)"
    )
    assert runs.labels[outcome.run] == {"trigger": DRIFT, "deferred": "2"}
    assert deferrals.pending() == [] and decide(SWEEP, runs, deferrals, "p").action == "nothing-deferred"


def test_a_failed_start_keeps_the_deferrals(runs, deferrals):
    runs.runs["running"] = True
    decide(NEW, runs, deferrals, "p")
    runs.runs["running"] = False

    def refuse(run, labels):
        raise RuntimeError("403")

    runs.start = refuse
    with pytest.raises(RuntimeError):
        decide(SWEEP, runs, deferrals, "p")
    assert deferrals.pending() == [NEW]


def test_deferrals_added_meanwhile_survive_a_removal(deferrals):
    other = Trigger(DRIFT, "b")
    deferrals.add(NEW)
    taken = deferrals.pending()
    deferrals.add(other)
    deferrals.remove(taken)
    assert deferrals.pending() == [other]
    deferrals.remove([other])
    assert not deferrals.path.exists()
