"""Shadow the new candidate behind the champion before the quality gate decides (local lifecycle only).

Why before the gate: the gate compares offline accuracy; the shadow shows what replacing the champion would change
for clients: how often the two disagree on the same images (with its 95 % interval) and each one's inference
latency, judged by the rollout rules (contracts.rollout). The gate still decides the promotion; the verdict is
shown and reported. Not a pipeline step: it starts a local service, which a Vertex AI Pipeline task has no use for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contracts.layout import CANDIDATE
from contracts.serving import Env, thresholds_environment
from lifecycle.client import HttpService
from lifecycle.served import running_service

BATCH = 16  # images per request: 10,000 test images make 625 requests, over rollout.min_requests' default (500)


@dataclass
class ShadowFigures:
    """What /monitoring/rollout said after the test set went through champion and candidate."""

    champion: str = ""
    challenger: str = ""
    images: int = 0
    agreement: float | None = None
    interval: tuple[float, float] = (0.0, 1.0)
    champion_p50_ms: float | None = None
    champion_p99_ms: float | None = None
    challenger_p50_ms: float | None = None
    challenger_p99_ms: float | None = None
    decision: str = ""
    reasons: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def shadow_env(thresholds) -> dict[str, str]:
    """The service's rollout variables: the candidate in shadow on every request, the config's thresholds."""
    return {
        Env.CHALLENGER: CANDIDATE,
        Env.ROLLOUT_MODE: "shadow",
        Env.SHADOW_SAMPLE_EVERY: "1",
        **thresholds_environment(thresholds),
    }


def figures_from(report: dict) -> ShadowFigures:
    champion, challenger = report.get("champion") or {}, report.get("challenger") or {}
    agreement = report.get("agreement") or {}
    verdict = report.get("verdict") or {}
    return ShadowFigures(
        champion=champion.get("version", ""),
        challenger=challenger.get("version", ""),
        images=int(agreement.get("compared", 0)),
        agreement=agreement.get("rate"),
        interval=tuple(agreement.get("interval_95", (0.0, 1.0))),
        champion_p50_ms=champion.get("inference_p50_ms"),
        champion_p99_ms=champion.get("inference_p99_ms"),
        challenger_p50_ms=challenger.get("inference_p50_ms"),
        challenger_p99_ms=challenger.get("inference_p99_ms"),
        decision=verdict.get("decision", ""),
        reasons=list(verdict.get("reasons", [])),
        report=report,
    )


def shadow_candidate(models_root: str, x_test: np.ndarray, thresholds, *, log=print) -> ShadowFigures:
    """Serve <models>@champion with the candidate in shadow, send the test set (binary path), read the verdict."""
    env = shadow_env(thresholds)
    with running_service(f"{models_root}@champion", extra_env=env) as (base, _):
        client = HttpService(base)
        try:
            client.classes_bytes(x_test, batch=BATCH)
            figures = figures_from(client.rollout())
        finally:
            client.close()
    low, high = figures.interval
    rate = "not measured" if figures.agreement is None else f"{figures.agreement:.2%} ({low:.2%}-{high:.2%}, 95 %)"
    log(f"shadow: champion {figures.champion} vs candidate {figures.challenger} on {figures.images:,} images")
    log(f"  agreement (same top class): {rate}")
    log(
        f"  inference p50 / p99: champion {_ms(figures.champion_p50_ms)} / {_ms(figures.champion_p99_ms)}, "
        f"candidate {_ms(figures.challenger_p50_ms)} / {_ms(figures.challenger_p99_ms)} ({BATCH} per request)"
    )
    log(f"  rollout verdict: {figures.decision} ({'; '.join(figures.reasons)}); the quality gate decides promotion")
    return figures


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"
