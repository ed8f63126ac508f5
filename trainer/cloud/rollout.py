"""`python -m trainer rollout`: end a canary (gcp: on the Vertex AI endpoint; local: in the prediction service).

`deploy-model --canary N` puts a challenger beside the champion with N % of the endpoint's traffic. This command
reads each deployed model's requests, errors and p99 latency over the last `rollout.window_minutes` from Cloud
Monitoring, judges them with contracts.rollout (thresholds from config `rollout.*`) and then acts: on "promote" the
challenger passes the registry's quality gate, takes 100 % of the traffic, the old model is undeployed and the
Vertex AI Model Registry aliases (champion, default) move to the challenger's version; on
"rollback" the challenger is undeployed and the champion gets 100 % back; on "wait" nothing changes (`--watch`
asks again every `--interval` seconds). Every decision is recorded in the registry's event log with its reasons.
Requests are built by pure functions (tests bind them to the installed SDKs); only `run` talks to Google Cloud.

local target: the service itself runs champion and challenger (CHALLENGER=candidate, service/rollout.py) and judges
them in GET /monitoring/rollout with the same contracts.rollout rules (agreement included, which the endpoint
cannot measure). This command reads that verdict (`--service-url`, default the local service) and acts on the
registry: "promote" promotes the challenger's version (through the quality gate), "rollback" records that the
canary ended; the service's champion slot follows the alias, so nothing is redeployed.

Google Cloud: only the promoter writes and signs the index (issue 25), so a "promote" is asked of the promoter's
approval job, as `trainer promotion approve` does (it runs the gate again; traffic moves only after it promoted), and
no canary event is written to the index: the verdict printed here is the record (`RegistryActions`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from contracts.registry_index import RegistryIndex
from contracts.rollout import Verdict, VersionStats, verdict
from contracts.serving import PORT, ROLLOUT_ROUTE, Env, deployed_model_version
from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError
from trainer.models.registry import ModelRegistry

METRIC_PREFIX = "aiplatform.googleapis.com/prediction/online/"
# what each figure is read from: (metric, per-series aligner, cross-series reducer)
SERIES = {
    "requests": ("prediction_count", "ALIGN_SUM", "REDUCE_SUM"),
    "errors": ("error_count", "ALIGN_SUM", "REDUCE_SUM"),
    "latency_p99_ms": ("prediction_latencies", "ALIGN_PERCENTILE_99", "REDUCE_MAX"),
}


@dataclass(frozen=True)
class Deployed:
    """One model on the endpoint: its deployed-model id, the registry version it serves, its traffic share."""

    id: str
    version: str
    traffic: int


def deployed_models(endpoint: Any) -> list[Deployed]:
    split = dict(endpoint.traffic_split or {})
    out = []
    for model in endpoint.list_models():
        version = deployed_model_version(model.display_name)
        out.append(Deployed(str(model.id), version, int(split.get(str(model.id), 0))))
    return out


def canary_pair(deployed: list[Deployed]) -> tuple[Deployed, Deployed]:
    """(champion, challenger): the challenger is the model with the smaller traffic share."""
    if len(deployed) != 2:
        found = ", ".join(f"{d.version} ({d.traffic} %)" for d in deployed) or "none"
        raise CommandError(
            f"a canary needs exactly two deployed models on the endpoint, found {len(deployed)}: {found}. "
            "Start one with `python -m trainer deploy-model candidate --canary 10`"
        )
    champion, challenger = sorted(deployed, key=lambda d: d.traffic, reverse=True)
    if champion.traffic == challenger.traffic:
        raise CommandError(f"both deployed models have {champion.traffic} % of the traffic: which is the canary?")
    return champion, challenger


def series_request(names: Any, figure: str, deployed_model_id: str, window_s: int, now: int) -> dict[str, Any]:
    """Keyword arguments of monitoring_v3.ListTimeSeriesRequest for one figure of one deployed model."""
    metric, aligner, reducer = SERIES[figure]
    return {
        "name": f"projects/{names.project}",
        "filter": (
            f'metric.type = "{METRIC_PREFIX}{metric}" AND resource.type = "aiplatform.googleapis.com/Endpoint"'
            f' AND resource.labels.endpoint_id = "{names.endpoint_id}"'
            f' AND metric.labels.deployed_model_id = "{deployed_model_id}"'
        ),
        "interval": {"start_time": {"seconds": now - window_s}, "end_time": {"seconds": now}},
        "aggregation": {
            "alignment_period": {"seconds": window_s},
            "per_series_aligner": aligner,
            "cross_series_reducer": reducer,
        },
        "view": "FULL",
    }


def _value(point: Any) -> float:
    value = point.value
    return float(value.double_value or value.int64_value)


def read_stats(client: Any, names: Any, deployed: Deployed, window_s: int, now: int) -> VersionStats:
    figures: dict[str, float | None] = {}
    for figure in SERIES:
        series = list(client.list_time_series(request=series_request(names, figure, deployed.id, window_s, now)))
        points = [_value(p) for s in series for p in s.points]
        figures[figure] = sum(points) if figure != "latency_p99_ms" else (max(points) if points else None)
    return VersionStats(
        deployed.version, int(figures["requests"] or 0), int(figures["errors"] or 0), figures["latency_p99_ms"]
    )


def plan(decision: Verdict, champion: Deployed, challenger: Deployed) -> list[tuple[str, dict[str, Any]]]:
    """The endpoint calls that carry out a verdict, as (Endpoint method, keyword arguments)."""
    if decision.decision == "promote":
        return [
            ("update", {"traffic_split": {challenger.id: 100}}),
            ("undeploy", {"deployed_model_id": champion.id, "sync": True}),
        ]
    if decision.decision == "rollback":
        return [("undeploy", {"deployed_model_id": challenger.id, "traffic_split": {champion.id: 100}, "sync": True})]
    return []


def move_model_aliases(aiplatform: Any, parent_model: str, index: RegistryIndex, version: str) -> list[str]:
    """After a promotion: the Vertex AI Model Registry version of `version` (found by its id, an alias deploy-model
    gave it) takes every registry alias that now points at it, plus `default` (the version served when none is
    named). An alias is unique within a model, so it moves from the version that had it. Returns the aliases."""
    aliases = sorted({alias for alias, target in index.aliases.items() if target == version} | {"default"})
    vertex_version = aiplatform.Model(model_name=f"{parent_model}@{version}").version_id
    aiplatform.models.ModelRegistry(parent_model).add_version_aliases(new_aliases=aliases, version=vertex_version)
    return aliases


LOCAL_SERVICE_URL = f"http://127.0.0.1:{PORT}"  # `python -m service`'s default port


def read_service_verdict(url: str, timeout_s: float = 10) -> dict[str, Any]:
    """GET <url>/monitoring/rollout, or a CommandError that says what to start or fix."""
    import requests

    target = url.rstrip("/") + ROLLOUT_ROUTE
    token = os.environ.get(Env.ADMIN_TOKEN)  # the operator's token shows the verdict's reasons, not just its codes
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        reply = requests.get(target, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise CommandError(
            f"cannot reach the prediction service at {url} ({type(exc).__name__}): start it with a challenger, "
            "e.g. CHALLENGER=candidate python -m service, or pass --service-url"
        ) from None
    if reply.status_code != 200:
        raise CommandError(f"GET {target} answered {reply.status_code}: {reply.text[:300]}")
    try:
        report: dict[str, Any] = reply.json()
    except ValueError:
        raise CommandError(f"GET {target} did not answer JSON: is {url} the prediction service?") from None
    if report.get("mode") == "off":
        raise CommandError(
            f"the service at {url} runs no rollout ({report.get('detail', 'no CHALLENGER configured')}): restart it "
            "with CHALLENGER=candidate ROLLOUT_MODE=shadow (or canary)"
        )
    return report


def run_local(args: Any, settings: Any) -> int:
    """Act on the service's own verdict: promote the challenger in the registry, or record the rollback."""
    url = args.service_url or LOCAL_SERVICE_URL
    registry = ModelRegistry.from_settings(settings)
    while True:
        report = read_service_verdict(url)
        decision = report["verdict"]
        summary = {k: report.get(k) for k in ("mode", "champion", "challenger", "agreement")}
        print(json.dumps({**summary, **decision}))
        if decision["decision"] != "wait" or not args.watch:
            break
        time.sleep(args.interval)
    challenger = (report.get("challenger") or {}).get("version")
    action, reasons = decision["decision"], list(decision.get("reasons") or decision.get("codes") or [])
    return act_on_registry(
        RegistryActions(settings, registry),
        action,
        challenger,
        reasons,
        dry_run=args.dry_run,
        target="local",
        mode=report.get("mode"),
    )


@dataclass
class RegistryActions:
    """What a verdict may change in the registry: in-process on the local target; on Google Cloud, promotion through
    the promoter's approval job and nothing written by this account (it may not write the index there)."""

    settings: Any
    registry: ModelRegistry
    runner: Any = None  # trainer.cloud.promotion.JobRunner; None: a new one on first use

    @property
    def through_promoter(self) -> bool:
        return bool(self.settings.target == "gcp")

    def promote(self, version: str) -> None:
        """Make `version` champion through the gate, or raise GateRefused (then nothing else happens)."""
        if not self.through_promoter:
            self.registry.promote(version)  # the quality gate has the last word
            return
        from trainer.cloud.promotion import approve

        approve(self.settings, version, self.runner)  # the promoter's gate has the last word

    def record(self, action: str, version: str, **details: Any) -> None:
        if self.through_promoter:
            print(
                f"{action} of {version} not written to {self.registry.index_uri}: on Google Cloud only the promoter "
                "writes it (this output is the record)"
            )
            return
        self.registry.record(action, version, **details)


def act_on_registry(
    actions: RegistryActions, action: str, challenger: str, reasons: list[str], *, dry_run: bool, **event: Any
) -> int:
    """What a verdict does to the registry (the service's slots follow its aliases): promote through the gate,
    or record the canary's end, with `event`'s details in the log; nothing on a wait or a dry run."""
    if action == "wait":
        print(f"wait: {'; '.join(reasons)}")
        return 0
    if dry_run:
        if actions.through_promoter:
            step = "end the canary"
            if action == "promote":
                step = f"ask the promoter's approval job to promote {challenger}"
            print(f"would {step}; nothing written to {actions.registry.index_uri} (only the promoter writes it)")
            return 0
        step = f"promote {challenger} to champion" if action == "promote" else "record the canary's end"
        print(f"would {step} and record canary-{action} in {actions.registry.index_uri}")
        return 0
    if action == "promote":
        actions.promote(challenger)
    actions.record(f"canary-{action}", challenger, reasons=reasons, **event)
    print(f"{action}: {'; '.join(reasons)}")
    return 0


def run_fleet(args: Any, settings: Any, ask: Any, target: str) -> int:
    """Judge the fleet's counters through PromQL (trainer/cloud/promql.py) for the registry's champion and
    candidate, then act on the registry as run_local does (the service's slots follow the aliases)."""
    from trainer.cloud.promql import fleet_verdict

    registry = ModelRegistry.from_settings(settings)
    index = registry.read_index()
    champion, challenger = registry.resolve("champion", index), registry.resolve(args.challenger, index)
    window = f"{settings.rollout.window_minutes}m" if args.window else None
    while True:
        decision, evidence = fleet_verdict(ask, champion, challenger, settings.rollout.thresholds(), window)
        print(
            json.dumps(
                {
                    "champion": champion,
                    "challenger": challenger,
                    "evidence": {**asdict(evidence)},
                    **decision.to_dict(),
                },
                default=str,
            )
        )
        if decision.decision != "wait" or not args.watch:
            break
        time.sleep(args.interval)
    return act_on_registry(
        RegistryActions(settings, registry),
        decision.decision,
        challenger,
        decision.reasons,
        dry_run=args.dry_run,
        target=target,
        source="promql",
    )


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--prometheus-url",
        help="local target: judge every instance's counters through this Prometheus server's PromQL API instead "
        "of one service's /monitoring/rollout",
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="gcp target: judge the Cloud Run fleet through Cloud Monitoring's PromQL API (not the Vertex endpoint)",
    )
    parser.add_argument("--challenger", default="candidate", help="with PromQL: the challenger's alias or version")
    parser.add_argument("--window", action="store_true", help="with PromQL: count only the last rollout.window_minutes")
    parser.add_argument(
        "--service-url",
        help=f"local target: the prediction service to read /monitoring/rollout from (default {LOCAL_SERVICE_URL})",
    )
    parser.add_argument("--watch", action="store_true", help="ask again until the verdict is promote or rollback")
    parser.add_argument("--interval", type=float, default=300, help="seconds between checks with --watch")
    parser.add_argument("--dry-run", action="store_true", help="print the verdict and the calls, change nothing")


def run(args: Any, settings: Any) -> int:
    if settings.target == "local":
        if args.prometheus_url:
            from trainer.cloud.promql import http_asker

            return run_fleet(args, settings, http_asker(args.prometheus_url), "local")
        return run_local(args, settings)
    require_gcp(settings, "rollout")
    if args.fleet:
        from trainer.cloud.promql import google_asker

        return run_fleet(args, settings, google_asker(settings.project_id), "cloud-run")
    from google.cloud import aiplatform, monitoring_v3

    names, config = settings.names, settings.rollout
    aiplatform.init(project=settings.project_id, location=settings.region)
    endpoint = aiplatform.Endpoint(names.endpoint_name)
    client = monitoring_v3.MetricServiceClient()
    registry = ModelRegistry.from_settings(settings)
    actions = RegistryActions(settings, registry)
    while True:
        champion, challenger = canary_pair(deployed_models(endpoint))
        now, window = int(time.time()), config.window_minutes * 60
        stats = [read_stats(client, names, d, window, now) for d in (champion, challenger)]
        decision = verdict(*stats, None, config.thresholds(), require_agreement=False)
        print(json.dumps({"champion": stats[0].__dict__, "challenger": stats[1].__dict__, **decision.to_dict()}))
        if decision.decision != "wait" or not args.watch:
            break
        time.sleep(args.interval)
    calls = plan(decision, champion, challenger)
    if args.dry_run or not calls:
        for method, kwargs in calls:
            print(f"would call Endpoint.{method}({kwargs})")
        return 0
    if decision.decision == "promote":
        actions.promote(challenger.version)  # the (promoter's) gate has the last word before traffic moves
    for method, kwargs in calls:
        getattr(endpoint, method)(**kwargs)
    if decision.decision == "promote":  # the Vertex AI Model Registry follows ours
        moved = move_model_aliases(aiplatform, names.parent_model_name, registry.read_index(), challenger.version)
        print(f"Vertex AI Model Registry: {challenger.version} now has {', '.join(moved)}")
    actions.record(f"canary-{decision.decision}", challenger.version, reasons=decision.reasons, target="vertex")
    print(f"{decision.decision}: {'; '.join(decision.reasons)}")
    return 0
