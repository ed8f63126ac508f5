"""The fleet's rollout verdict from PromQL: the same per-client sums every instance exposes, summed over all of them.

Why PromQL: one Cloud Run instance (or one local server) only knows its own counters; Managed Service for
Prometheus (on Google Cloud, fed by each instance's sidecar) and a local Prometheus server scraping several
instances both answer the queries of contracts.monitoring_queries over the whole fleet, through the same HTTP API
(`/api/v1/query`). The answers become contracts.rollout.ClientTally rows and are judged by capped_evidence and
verdict, exactly as the service judges its own counters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from contracts.monitoring_queries import feedback_queries, rollout_queries
from contracts.rollout import (
    Accuracy,
    ClientTally,
    Evidence,
    Thresholds,
    Verdict,
    VersionStats,
    capped_accuracy,
    capped_evidence,
    verdict,
)
from trainer.errors import CommandError

Ask = Callable[[str], list[dict[str, Any]]]  # PromQL text -> the API's `data.result` (instant vector)


def cloud_monitoring_url(project: str) -> str:
    """Cloud Monitoring's Prometheus-compatible API root for a project (queries span every region)."""
    return f"https://monitoring.googleapis.com/v1/projects/{project}/location/global/prometheus"


def http_asker(base_url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 30) -> Ask:
    """An Ask that GETs <base_url>/api/v1/query; errors name the server and the query."""
    import requests

    def ask(expr: str) -> list[dict[str, Any]]:
        target = base_url.rstrip("/") + "/api/v1/query"
        try:
            reply = requests.get(target, params={"query": expr}, headers=dict(headers or {}), timeout=timeout_s)
        except requests.RequestException as exc:
            raise CommandError(
                f"cannot reach the Prometheus API at {base_url} ({type(exc).__name__}): check --prometheus-url"
            ) from None
        body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
        if reply.status_code != 200 or body.get("status") != "success":
            raise CommandError(f"PromQL {expr!r} failed at {target}: {reply.status_code} {reply.text[:300]}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    return ask


def google_asker(project: str) -> Ask:
    """An Ask against Cloud Monitoring with the application default credentials (monitoring.read)."""
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/monitoring.read"])
    credentials.refresh(google.auth.transport.requests.Request())
    return http_asker(cloud_monitoring_url(project), {"Authorization": f"Bearer {credentials.token}"})


def by_client(result: list[dict[str, Any]]) -> dict[str, float]:
    return {row["metric"].get("client", ""): float(row["value"][1]) for row in result}


def fleet_tallies(ask: Ask, champion: str, challenger: str, window: str | None = None) -> list[ClientTally]:
    """One ClientTally per client bucket, from the six queries of contracts.monitoring_queries."""
    figures = {name: by_client(ask(text)) for name, text in rollout_queries(champion, challenger, window).items()}
    clients = sorted(set(figures["requests"]) | set(figures["compared"]))
    return [ClientTally(**{name: figures[name].get(c, 0.0) for name in figures}) for c in clients]


def fleet_accuracy(ask: Ask, version: str, max_poster_labels: int, window: str | None = None) -> Accuracy:
    """One version's accuracy from labels over the fleet, each label-poster bucket capped."""
    figures = {
        name: {row["metric"].get("poster", ""): float(row["value"][1]) for row in ask(text)}
        for name, text in feedback_queries(version, window).items()
    }
    labelled, correct = figures["labelled"], figures["correct"]
    return capped_accuracy(((labelled[p], correct.get(p, 0.0)) for p in sorted(labelled)), max_poster_labels)


def fleet_verdict(
    ask: Ask, champion: str, challenger: str, thresholds: Thresholds, window: str | None = None
) -> tuple[Verdict, Evidence]:
    """The verdict on the whole fleet's counters (champion figures are not needed: the latency rule is paired);
    accuracy from labels joins it once both versions have enough (contracts.rollout)."""
    evidence = capped_evidence(fleet_tallies(ask, champion, challenger, window), thresholds.max_client_requests)
    accuracy = (
        fleet_accuracy(ask, champion, thresholds.max_poster_labels, window),
        fleet_accuracy(ask, challenger, thresholds.max_poster_labels, window),
    )
    decision = verdict(
        VersionStats(champion, 0, 0),
        VersionStats(challenger, evidence.requests, evidence.errors, clients=evidence.clients),
        evidence.agreement,
        thresholds,
        latency_ratio=evidence.latency_ratio,
        accuracy=accuracy,
    )
    return decision, evidence
