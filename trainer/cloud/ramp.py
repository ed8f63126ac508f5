"""`python -m trainer ramp`: a progressive rollout (5 -> 25 -> 50 -> 100 %) that promotes or rolls back unattended.

Each run is one tick, so Cloud Scheduler can start it as a Cloud Run job every few minutes (infra/components/
ramp.py) and `--watch` can loop it locally: read where the ramp stands from the registry's event log, judge the
fleet's evidence gathered since the current step began, act, record, exit. No state lives anywhere else.

The judgement (judge_step) is a pair of always-valid tests per rate (contracts/sequential.py, a mixture SPRT): the
challenger's error rate against `rollout.max_error_rate` and its disagreement with the champion (1 - agreement per
request) against `1 - rollout.min_agreement`, on the per-client capped sums of contracts.rollout.capped_evidence
read through PromQL (trainer/cloud/promql.py). A step is rolled back as soon as either rate is shown above its
boundary, and advanced once both are shown below it from at least `rollout.min_clients` distinct clients; reading
the evidence every minute does not make either more likely than its alpha. Error rates: promoting a challenger
whose rates are over a boundary needs its last step to pass (<= alpha); rolling back a good one can happen at any of
the steps' two harm tests, so each harm test runs at alpha / (2 x steps) (union bound: <= alpha in all). Latency is a
guard, not a test: once `rollout.min_requests` requests were scored by both models, from enough clients, a paired
inference-time ratio over `rollout.max_latency_ratio` rolls back (a step never advances before that).

What a step changes (Actuator): the share of clients the Cloud Run service's in-service canary sends to the
challenger (its CANARY_PERCENT, a new revision through the Cloud Run Admin API), and the Vertex AI endpoint's
traffic split where the challenger is deployed there too. The last step promotes the challenger through the
registry's quality gate (registry.promote: the gate has the last word) and sets the share back to 0: the champion
slot follows the alias. Every step, promotion and rollback is an event in the registry's log with what triggered
it (the Cloud Run job's execution, or the user) and the evidence.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from contracts.registry_index import RegistryIndex
from contracts.rollout import Evidence, Thresholds
from contracts.sequential import RateJudgement, RateTest
from contracts.serving import Env
from trainer.cloud.endpoints import run_api
from trainer.errors import CommandError, GateRefused
from trainer.models.registry import ModelRegistry

STEP, PROMOTE, ROLLBACK = "ramp-step", "ramp-promote", "ramp-rollback"  # the registry events this writes
RAMP_ACTIONS = (STEP, PROMOTE, ROLLBACK)  # the events that say where a ramp stands
RESTORE = "ramp-restore"  # a share something else had moved, put back (a deploy); the step goes on, its window too
Move = Literal["advance", "rollback", "wait"]


@dataclass(frozen=True)
class StepVerdict:
    """One read of one step: advance, roll back or wait, with reason codes and reasons."""

    decision: Move
    codes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def judge_step(evidence: Evidence, thresholds: Thresholds, alpha: float, steps: int) -> StepVerdict:
    """The sequential verdict on the evidence gathered since a step began (see the module docstring)."""
    harm_alpha = alpha / (2 * steps)
    errors = RateTest(thresholds.max_error_rate, harm_alpha).judge(evidence.errors, evidence.requests)
    errors_ok = RateTest(thresholds.max_error_rate, alpha).judge(evidence.errors, evidence.requests)
    boundary = 1.0 - thresholds.min_agreement
    agreement = evidence.agreement
    disagreement: RateJudgement | None = None
    disagreement_ok: RateJudgement | None = None
    if agreement is not None:
        disagreed = max(0.0, agreement.compared - agreement.agreed)
        disagreement = RateTest(boundary, harm_alpha).judge(disagreed, agreement.compared)
        disagreement_ok = RateTest(boundary, alpha).judge(disagreed, agreement.compared)
    enough_clients = evidence.clients >= thresholds.min_clients
    compared = 0.0 if agreement is None else agreement.compared
    enough_pairs = compared >= thresholds.min_requests  # paired timings are noisy: the latency guard waits for them
    failures: list[tuple[str, str]] = []
    if errors.too_high:
        failures.append(("error_rate_high", errors.describe("challenger error rate")))
    if disagreement is not None and disagreement.too_high:
        failures.append(("agreement_low", disagreement.describe("disagreement with the champion")))
    ratio = evidence.latency_ratio
    if ratio is not None and enough_clients and enough_pairs and ratio > thresholds.max_latency_ratio:
        failures.append(("latency_high", f"challenger inference time {ratio:.2f}x the champion's on the same images"))
    if failures:
        return StepVerdict("rollback", [c for c, _ in failures], [r for _, r in failures])
    pending: list[tuple[str, str]] = []
    if not enough_clients:
        pending.append(("too_few_clients", f"{evidence.clients} of the {thresholds.min_clients} distinct clients"))
    if not enough_pairs:
        pending.append(("too_few_requests", f"{compared:.1f} of the {thresholds.min_requests} paired requests"))
    if not errors_ok.acceptable:
        pending.append(("error_rate_uncertain", errors_ok.describe("challenger error rate")))
    if disagreement_ok is None:
        pending.append(("agreement_unmeasured", "no request scored by both models in this step yet"))
    elif not disagreement_ok.acceptable:
        pending.append(("agreement_uncertain", disagreement_ok.describe("disagreement with the champion")))
    if pending:
        return StepVerdict("wait", [c for c, _ in pending], [r for _, r in pending])
    passed = (
        f"{errors_ok.describe('error rate')}; {disagreement_ok.describe('disagreement')}" if disagreement_ok else ""
    )
    return StepVerdict("advance", ["passed"], [f"{evidence.clients} clients; {passed}"])


# ---- where the ramp stands: the registry's event log ------------------------------------------------------------


@dataclass(frozen=True)
class RampState:
    """The last ramp event for a challenger: its action, the share it set and when."""

    action: str
    percent: float
    at: str

    @property
    def finished(self) -> bool:
        return self.action in (PROMOTE, ROLLBACK)

    def seconds_since(self, now: datetime) -> float:
        started = datetime.fromisoformat(self.at.replace("Z", "+00:00"))
        return max(0.0, (now - started).total_seconds())


def ramp_state(index: RegistryIndex, challenger: str) -> RampState | None:
    """The newest ramp event of `challenger` in the log, or None when no ramp started for it."""
    for event in reversed(index.events):
        if event.get("version") == challenger and event.get("action") in RAMP_ACTIONS:
            return RampState(str(event["action"]), float(event.get("percent", 0.0)), str(event["at"]))
    return None


def next_percent(steps: Sequence[float], current: float) -> float | None:
    """The step after `current`, or None when `current` is the last (the next move is the promotion)."""
    later = [step for step in steps if step > current]
    return min(later) if later else None


def validate_steps(steps: Sequence[float]) -> list[float]:
    ordered = list(steps)
    if not ordered or ordered != sorted(set(ordered)) or ordered[0] <= 0 or ordered[-1] != 100:
        raise CommandError(
            f"ramp steps {ordered}: expected increasing shares above 0 that end at 100, e.g. 5 25 50 100 "
            "(config rollout.ramp_steps or --steps)"
        )
    return ordered


def trigger(environ: Mapping[str, str] = os.environ) -> str:
    """Who or what runs this tick: the Cloud Run job's execution (started by Cloud Scheduler), else the user."""
    execution = environ.get("CLOUD_RUN_EXECUTION")
    if execution:
        return f"cloud-run-job:{environ.get('CLOUD_RUN_JOB', '?')}/{execution}"
    return f"user:{getpass.getuser()}"


# ---- acting ----------------------------------------------------------------------------------------------------


class Actuator(Protocol):
    """Moves the challenger's share of traffic during the ramp, and ends it (promoted or rolled back)."""

    name: str

    def set_share(self, percent: float) -> None: ...

    def hold_share(self, percent: float) -> bool:
        """Between steps: puts the share back to `percent` where something else moved it (a deploy sets the Cloud
        Run service's environment back to the config's CANARY_PERCENT); True when it had to."""
        ...

    def finish(self, promoted: bool) -> None: ...


@dataclass
class Tick:
    """What one tick saw and did (printed as JSON, returned for tests)."""

    challenger: str
    champion: str | None
    action: str  # start, wait, step, promote, rollback, done, refused
    percent: float
    verdict: StepVerdict | None = None
    evidence: Evidence | None = None
    detail: str = ""


EvidenceReader = Callable[[str, str, float], Evidence]  # (champion, challenger, seconds since the step) -> Evidence


def tick(
    registry: ModelRegistry,
    challenger_ref: str,
    read_evidence: EvidenceReader,
    actuators: Sequence[Actuator],
    thresholds: Thresholds,
    *,
    steps: Sequence[float],
    alpha: float,
    who: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    dry_run: bool = False,
) -> Tick:
    """One step of the ramp's state machine (module docstring); records every change in the registry's log."""
    steps = validate_steps(steps)
    index = registry.read_index()
    challenger = registry.resolve(challenger_ref, index)
    champion = index.alias("champion")
    state = ramp_state(index, challenger)
    if champion == challenger:
        return Tick(challenger, champion, "done", 0.0, detail=f"{challenger} is the champion")
    if state is not None and state.finished:
        return Tick(
            challenger, champion, "done", state.percent, detail=f"the ramp of {challenger} ended: {state.action}"
        )
    if champion is None:
        raise CommandError("the registry has no champion: a ramp moves traffic from a champion to a challenger")
    details = {"champion": champion, "trigger": who}
    if state is None:
        first = steps[0]
        if not dry_run:
            _move(actuators, first)
            registry.record(STEP, challenger, percent=first, previous=0.0, **details, actuators=_names(actuators))
        return Tick(challenger, champion, "start", first, detail=f"ramp started at {first} %")
    if not dry_run:
        restored = [actuator.name for actuator in actuators if actuator.hold_share(state.percent)]
        if restored:  # not a ramp action: the step and the window its evidence is read over go on
            registry.record(RESTORE, challenger, percent=state.percent, **details, actuators=restored)
    evidence = read_evidence(champion, challenger, state.seconds_since(now()))
    decision = judge_step(evidence, thresholds, alpha, len(steps))
    out = Tick(challenger, champion, "wait", state.percent, decision, evidence)
    if decision.decision == "wait" or dry_run:
        out.action = "wait" if decision.decision == "wait" else f"would-{decision.decision}"
        return out
    record = {**details, "codes": decision.codes, "reasons": decision.reasons, "evidence": _plain(evidence)}
    if decision.decision == "rollback":
        _finish(actuators, promoted=False)
        registry.record(ROLLBACK, challenger, percent=0.0, previous=state.percent, **record)
        out.action, out.percent = "rollback", 0.0
        return out
    following = next_percent(steps, state.percent)
    if following is not None:
        _move(actuators, following)
        registry.record(STEP, challenger, percent=following, previous=state.percent, **record)
        out.action, out.percent = "step", following
        return out
    try:
        registry.promote(challenger)  # the quality gate has the last word
    except GateRefused as exc:
        _finish(actuators, promoted=False)
        registry.record(ROLLBACK, challenger, percent=0.0, previous=state.percent, **record, gate=str(exc))
        out.action, out.percent, out.detail = "refused", 0.0, str(exc)
        return out
    _finish(actuators, promoted=True)
    registry.record(PROMOTE, challenger, percent=100.0, previous=state.percent, **record)
    out.action, out.percent = "promote", 100.0
    return out


def _move(actuators: Sequence[Actuator], percent: float) -> None:
    for actuator in actuators:
        actuator.set_share(percent)


def _finish(actuators: Sequence[Actuator], *, promoted: bool) -> None:
    for actuator in actuators:
        actuator.finish(promoted)


def _names(actuators: Sequence[Actuator]) -> list[str]:
    return [actuator.name for actuator in actuators]


def _plain(evidence: Evidence) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(evidence), default=float))  # type: ignore[no-any-return]


# ---- Cloud Run: the in-service canary share ---------------------------------------------------------------------


def cloud_run_share_body(service: Mapping[str, Any], percent: float) -> dict[str, Any]:
    """The Service resource for `PATCH {run_api()}/{name}`: the one read (etag included, so a concurrent change is
    refused) with CANARY_PERCENT set on the container that serves (the one that reads CHALLENGER); a new revision
    follows, whose instances route `percent` % of the clients to the challenger. Raises if no container has one."""
    body = json.loads(json.dumps(dict(service)))
    containers = body.get("template", {}).get("containers", [])
    serving = [c for c in containers if any(e.get("name") == Env.CHALLENGER for e in c.get("env", []))]
    if len(serving) != 1:
        raise CommandError(
            f"{service.get('name')}: expected one container with {Env.CHALLENGER} set (the in-service rollout), "
            f"found {len(serving)}: set service.challenger and service.rollout_mode=canary in the config and deploy"
        )
    env = [e for e in serving[0]["env"] if e.get("name") != Env.CANARY_PERCENT]
    serving[0]["env"] = [*env, {"name": Env.CANARY_PERCENT, "value": f"{percent:g}"}]
    mode = next((e.get("value") for e in env if e.get("name") == Env.ROLLOUT_MODE), None)
    if mode != "canary":
        raise CommandError(f"{service.get('name')}: {Env.ROLLOUT_MODE} is {mode!r}, a ramp needs canary")
    return body


def cloud_run_share(service: Mapping[str, Any]) -> str | None:
    """The CANARY_PERCENT the serving container (the one that reads CHALLENGER) has now, as written."""
    for container in service.get("template", {}).get("containers", []):
        env = {e.get("name"): e.get("value") for e in container.get("env", [])}
        if Env.CHALLENGER in env:
            return env.get(Env.CANARY_PERCENT)
    return None


@dataclass
class CloudRunShare:
    """Sets the Cloud Run service's CANARY_PERCENT through the Admin API (GET, then PATCH with its etag)."""

    service_name: str  # projects/<p>/locations/<r>/services/<s>
    session: Any  # an authorized requests session (google.auth.transport.requests.AuthorizedSession)
    name: str = "cloud-run"

    def set_share(self, percent: float) -> None:
        self._patch(self._get(), percent)

    def hold_share(self, percent: float) -> bool:
        service = self._get()
        if cloud_run_share(service) == f"{percent:g}":
            return False  # no new revision when nothing moved
        self._patch(service, percent)
        return True

    def _get(self) -> dict[str, Any]:
        url = f"{run_api()}/{self.service_name}"
        current = self.session.get(url, timeout=60)
        if current.status_code != 200:
            raise CommandError(f"GET {url} answered {current.status_code}: {current.text[:300]}")
        return current.json()  # type: ignore[no-any-return]

    def _patch(self, service: Mapping[str, Any], percent: float) -> None:
        url = f"{run_api()}/{self.service_name}"
        reply = self.session.patch(url, json=cloud_run_share_body(service, percent), timeout=60)
        if reply.status_code != 200:
            raise CommandError(f"PATCH {url} answered {reply.status_code}: {reply.text[:300]}")

    def finish(self, promoted: bool) -> None:
        """Either way no client is routed to a challenger any more: promoted, the champion slot follows the alias
        to the challenger's version; rolled back, the champion answers everyone."""
        self.set_share(0.0)


# ---- Vertex AI: the endpoint's traffic split ----------------------------------------------------------------------


def vertex_split_calls(
    deployed: Sequence[Any], champion: str, challenger: str, percent: float | None, promoted: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The Endpoint calls, as (method, kwargs), for `percent` % to the challenger, or (percent None) for the ramp's
    end: trainer/cloud/rollout.py's plan (promoted: the challenger takes 100 % and the champion is undeployed;
    rolled back: the challenger is undeployed). [] when the endpoint does not hold both versions (a ramp on Cloud
    Run alone). A split is in whole percents summing to 100."""
    from contracts.rollout import Verdict
    from trainer.cloud.rollout import plan

    by_version = {d.version: d for d in deployed}
    if champion not in by_version or challenger not in by_version:
        return []
    ours, theirs = by_version[champion], by_version[challenger]
    if percent is None:
        return plan(Verdict("promote" if promoted else "rollback"), ours, theirs)
    share = round(percent)
    return [("update", {"traffic_split": {theirs.id: share, ours.id: 100 - share}})]


@dataclass
class VertexSplit:
    """Moves the Vertex AI endpoint's traffic split with the ramp (trainer/cloud/rollout.py reads its models)."""

    endpoint: Any  # aiplatform.Endpoint
    champion: str
    challenger: str
    name: str = "vertex"

    def set_share(self, percent: float) -> None:
        self._call(percent, promoted=False)

    def hold_share(self, percent: float) -> bool:
        from trainer.cloud.rollout import deployed_models

        by_version = {d.version: d.traffic for d in deployed_models(self.endpoint)}
        if self.champion not in by_version or self.challenger not in by_version:
            return False  # a ramp on Cloud Run alone
        if by_version[self.challenger] == round(percent) and by_version[self.champion] == 100 - round(percent):
            return False
        self._call(percent, promoted=False)
        return True

    def finish(self, promoted: bool) -> None:
        self._call(None, promoted=promoted)

    def _call(self, percent: float | None, *, promoted: bool) -> None:
        from trainer.cloud.rollout import deployed_models

        deployed = deployed_models(self.endpoint)
        for method, kwargs in vertex_split_calls(deployed, self.champion, self.challenger, percent, promoted):
            getattr(self.endpoint, method)(**kwargs)


@dataclass
class CommandShare:
    """Locally: run a command with the share as its last argument (a script that restarts the fleet with it)."""

    command: list[str]
    name: str = "command"

    def set_share(self, percent: float) -> None:
        import subprocess

        subprocess.run([*self.command, f"{percent:g}"], check=True)

    def hold_share(self, percent: float) -> bool:
        return False  # locally only this command moves the fleet's share (running it restarts the fleet)

    def finish(self, promoted: bool) -> None:
        self.set_share(0.0)


# ---- command line -------------------------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    parser.add_argument("--challenger", default="candidate", help="the challenger's alias or version")
    parser.add_argument("--steps", type=float, nargs="+", help="shares in %% (default config rollout.ramp_steps)")
    parser.add_argument("--prometheus-url", help="local target: the Prometheus server scraping the fleet")
    parser.add_argument(
        "--share-command",
        help="local target: a command run with the new share as its last argument (restarts the fleet with it)",
    )
    parser.add_argument(
        "--since-start",
        action="store_true",
        help="judge the live instances' counters as they are (each step restarts the fleet) instead of increase() "
        "over the time since the step began",
    )
    parser.add_argument("--watch", action="store_true", help="tick again every --interval seconds until it ends")
    parser.add_argument("--interval", type=float, default=60, help="seconds between ticks with --watch")
    parser.add_argument("--dry-run", action="store_true", help="judge and print, change nothing")


def promql_evidence(
    ask: Any, thresholds: Thresholds, *, windowed: bool = True, min_window_s: int = 60
) -> EvidenceReader:
    """The fleet's evidence since the step began, through PromQL (contracts.monitoring_queries).

    windowed: increase() over the seconds since the step's event (at least `min_window_s`, two scrapes of the
    collector), for a fleet whose instances outlive a step. Not windowed: the live instances' counters as they
    are, for a fleet that each step restarts (the local fleet; a Cloud Run revision starts new instances too).
    Either way a series' count before its first scrape is not seen: evidence arrives late, never inflated."""
    from contracts.rollout import capped_evidence
    from trainer.cloud.promql import fleet_tallies

    def read(champion: str, challenger: str, seconds: float) -> Evidence:
        window = f"{max(min_window_s, int(seconds) + 1)}s" if windowed else None
        return capped_evidence(fleet_tallies(ask, champion, challenger, window), thresholds.max_client_requests)

    return read


def run(args: Any, settings: Any) -> int:
    rollout = settings.rollout
    thresholds = rollout.thresholds()
    registry = ModelRegistry.from_settings(settings)
    steps = validate_steps(args.steps or rollout.ramp_steps)
    actuators: list[Actuator] = []
    if settings.target == "local":
        if not args.prometheus_url:
            raise CommandError("local target: pass --prometheus-url (the Prometheus server scraping the fleet)")
        from trainer.cloud.promql import http_asker

        ask = http_asker(args.prometheus_url)
        if args.share_command:
            import shlex

            actuators.append(CommandShare(shlex.split(args.share_command)))
    else:
        from trainer.cloud.promql import google_asker
        from trainer.cloud.vertex import require_gcp

        require_gcp(settings, "ramp")
        ask = google_asker(settings.project_id)
        actuators.extend(_cloud_actuators(settings, registry, args.challenger))
    read = promql_evidence(ask, thresholds, windowed=not args.since_start)
    while True:
        result = tick(
            registry,
            args.challenger,
            read,
            actuators,
            thresholds,
            steps=steps,
            alpha=rollout.ramp_alpha,
            who=trigger(),
            dry_run=args.dry_run,
        )
        print(json.dumps(_summary(result), default=str))
        if not args.watch or result.action in ("promote", "rollback", "refused", "done"):
            return 3 if result.action == "refused" else 0
        time.sleep(args.interval)


def _cloud_actuators(settings: Any, registry: ModelRegistry, challenger_ref: str) -> list[Actuator]:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import aiplatform

    names = settings.names
    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    service = f"projects/{settings.project_id}/locations/{settings.region}/services/{names.cloud_run_service}"
    out: list[Actuator] = [CloudRunShare(service, AuthorizedSession(credentials))]
    aiplatform.init(project=settings.project_id, location=settings.region)
    index = registry.read_index()
    champion = index.alias("champion")
    if champion:
        out.append(VertexSplit(aiplatform.Endpoint(names.endpoint_name), champion, registry.resolve(challenger_ref)))
    return out


def _summary(result: Tick) -> dict[str, Any]:
    out: dict[str, Any] = {
        "challenger": result.challenger,
        "champion": result.champion,
        "action": result.action,
        "percent": result.percent,
    }
    if result.verdict is not None:
        out["verdict"] = asdict(result.verdict)
    if result.evidence is not None:
        out["evidence"] = _plain(result.evidence)
    if result.detail:
        out["detail"] = result.detail
    return out
