"""The lifecycle's shadow step: the candidate behind the champion over HTTP before the gate, and its summary."""

from __future__ import annotations

from contracts.rollout import Thresholds
from lifecycle.checks.report import RunSummary
from lifecycle.checks.shadow import BATCH, shadow_candidate
from tests.service.conftest import linear_model_dir, model_dir  # noqa: F401 - the service suite's model fixtures
from tests.service.model_factory import build_registry, generated_images
from tests.service.test_rollout_server import _with_candidate


def test_shadow_reports_agreement_latency_and_the_verdict(tmp_path, model_dir, linear_model_dir):  # noqa: F811
    root = _with_candidate(build_registry(tmp_path / "models", model_dir), linear_model_dir)
    images, _ = generated_images(20 * BATCH, seed=77)
    printed: list[str] = []
    figures = shadow_candidate(str(root), images, Thresholds(min_requests=20), log=printed.append)
    assert (figures.champion, figures.challenger, figures.images) == ("test-v1", "test-v2", 20 * BATCH)
    assert figures.report["challenger"]["requests"] == 20
    assert figures.agreement is not None and figures.interval[0] <= figures.agreement <= figures.interval[1]
    assert figures.decision == "rollback"  # a random linear model is no challenger to the CNN
    assert figures.champion_p99_ms and figures.challenger_p99_ms
    assert any("agreement (same top class)" in line for line in printed)
    summary = RunSummary()
    summary.record_shadow(figures)
    rows = dict(summary.rows())
    assert rows["shadow: champion vs candidate"] == f"test-v1 vs test-v2, {20 * BATCH} images"
    assert rows["shadow: rollout verdict"].startswith("rollback: agreement with the champion")
    assert "95 % interval" in rows["shadow: agreement (same class)"]


def test_first_run_has_nothing_to_shadow(settings, capsys):
    from lifecycle.__main__ import shadow_step
    from lifecycle.orchestration.steps import StepLog
    from trainer.models.registry import ModelRegistry

    summary = RunSummary()
    shadow_step(settings, ModelRegistry.from_settings(settings), summary, StepLog())
    assert "no champion yet: nothing to shadow" in capsys.readouterr().out
    assert dict(summary.rows())["shadow before the gate"] == "no champion yet: nothing to shadow"
