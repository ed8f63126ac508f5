"""The decision: start one run, or defer the trigger while a run is active; never two runs at once, never a lost one.

- A trigger whose run exists already (a redelivered event: Pub/Sub and Eventarc deliver at least once) starts
  nothing: its run id is deterministic (`<pipeline>-<kind>-<key>`), so the create answers 409.
- While a run is active a trigger is recorded in the deferrals (durable: an object on Google Cloud), answered as
  deferred, and started by the next start: the next trigger, or the sweep (Cloud Scheduler, every 30 minutes)
  once no run is active. A start takes every deferral with it, since one run covers them all.
- The run is created and not waited for: a lifecycle run takes tens of minutes.

Listing then creating is not atomic across two starters; on Google Cloud the function runs one request at a time
(one instance, concurrency 1), so the run one trigger created is active when the next trigger lists.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from contracts.starter import DEFERRED
from starter.events import Trigger

Action = Literal["started", "exists", "deferred", "nothing-deferred"]
RUN_ID_MAX = 128  # Vertex AI's pipelineJobId: [a-z0-9][a-z0-9-]{0,127}


class Runs(Protocol):
    """Where runs start: Vertex AI Pipelines (starter.vertex) or a local process (lifecycle.alert_starter)."""

    def active(self) -> list[str]:
        """The ids of the runs not over yet, newest first."""
        ...

    def start(self, run_id: str, labels: dict[str, str]) -> bool:
        """Create the run without waiting for it; False when a run of this id exists already."""
        ...

    def exists(self, run_id: str) -> bool:
        """Whether a run of this id was ever created (finished ones too)."""
        ...


class Deferrals(Protocol):
    """Triggers that arrived during a run, kept until a run starts for them (starter.deferrals)."""

    def add(self, trigger: Trigger) -> None:
        """Record it (once per kind and key)."""
        ...

    def pending(self) -> list[Trigger]: ...

    def remove(self, triggers: list[Trigger]) -> None:
        """Forget these (a run now covers them); any added meanwhile stay."""
        ...


@dataclass(frozen=True)
class Outcome:
    action: Action
    run: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "run": self.run, "reason": self.reason}


def run_id(pipeline: str, trigger: Trigger) -> str:
    """`<pipeline>-<kind>-<key>`, lower-case letters, digits and dashes; a long key becomes its hash."""
    key = re.sub(r"[^a-z0-9]+", "-", trigger.key.lower()).strip("-")
    if not key or len(key) > 40:
        key = hashlib.sha256(trigger.key.encode()).hexdigest()[:16]
    return f"{pipeline}-{trigger.kind}-{key}"[:RUN_ID_MAX]


def decide(trigger: Trigger, runs: Runs, deferrals: Deferrals, pipeline: str) -> Outcome:
    """Act on one trigger (the sweep's kind is DEFERRED: it starts only what waits)."""
    waiting = deferrals.pending()
    sweep = trigger.kind == DEFERRED
    if sweep:
        if not waiting:
            return Outcome("nothing-deferred", "", "no trigger waits")
        trigger = Trigger(waiting[0].kind, "+".join(sorted(f"{t.kind}:{t.key}" for t in waiting)), "deferred")
    own = run_id(pipeline, trigger)
    active = runs.active()
    if own in active:
        return Outcome("exists", own, "this event's run is running (a redelivered event)")
    if active:
        if not sweep and runs.exists(own):  # redelivered after its run ended: not a new trigger
            return Outcome("exists", own, "this event's run was started before (a redelivered event)")
        if not sweep:
            deferrals.add(trigger)
        return Outcome("deferred", active[0], f"{active[0]} is active: {trigger.kind} starts a run after it")
    labels = {"trigger": trigger.kind, **({"deferred": str(len(waiting))} if waiting else {})}
    started = runs.start(own, labels)
    if waiting:
        deferrals.remove(waiting)  # after the create: a failed create keeps them
    if not started:
        return Outcome("exists", own, "this event's run was started before (a redelivered event)")
    covered = f"; it covers {len(waiting)} deferred trigger(s)" if waiting else ""
    return Outcome("started", own, f"{trigger.kind} {trigger.detail}{covered}".strip())
