"""`trainer rollout` and `deploy-model --canary`: the requests and calls they build, bound to the installed SDKs."""

import inspect
import json
import sys
from types import SimpleNamespace

import pytest
from google.cloud import aiplatform, monitoring_v3

from contracts.rollout import Verdict
from settings import load_config
from trainer import cli
from trainer.cloud import rollout
from trainer.cloud.rollout import Deployed
from trainer.errors import CommandError

CHAMPION, CHALLENGER = Deployed("111", "v1", 90), Deployed("222", "v2", 10)


@pytest.fixture
def dev():
    return load_config("dev", environ={})


@pytest.mark.parametrize("figure", list(rollout.SERIES))
def test_series_requests_are_valid_list_time_series_requests(dev, figure):
    request = rollout.series_request(dev.names, figure, "222", window_s=3600, now=1_800_000_000)
    built = monitoring_v3.ListTimeSeriesRequest(**request)  # the proto rejects a misspelled field or enum
    assert built.name == "projects/fmnist-mlops-dev"
    assert f'endpoint_id = "{dev.infra.endpoint_id}"' in built.filter and 'deployed_model_id = "222"' in built.filter
    assert built.interval.end_time.timestamp() - built.interval.start_time.timestamp() == 3600
    assert built.aggregation.alignment_period.total_seconds() == 3600
    inspect.signature(monitoring_v3.MetricServiceClient.list_time_series).bind(None, request=request)


def _series(*values, double=False):
    points = [monitoring_v3.Point(value={"double_value" if double else "int64_value": v}) for v in values]
    return monitoring_v3.TimeSeries(points=points)


def test_read_stats_sums_counts_and_takes_the_worst_p99(dev):
    answers = {
        "prediction_count": [_series(600, 400)],
        "error_count": [_series(3)],
        "prediction_latencies": [_series(9.5, 12.25, double=True)],
    }

    class Client:
        def list_time_series(self, request):
            metric = request["filter"].split('"')[1].rsplit("/", 1)[1]
            return answers[metric]

    stats = rollout.read_stats(Client(), dev.names, CHALLENGER, 3600, 1_800_000_000)
    assert (stats.version, stats.requests, stats.errors, stats.latency_p99_ms) == ("v2", 1000, 3, 12.25)


def test_deployed_models_and_the_canary_pair():
    endpoint = SimpleNamespace(
        traffic_split={"111": 90, "222": 10},
        list_models=lambda: [
            SimpleNamespace(id="111", display_name="fmnist-v1"),
            SimpleNamespace(id="222", display_name="fmnist-v2"),
        ],
    )
    assert rollout.canary_pair(rollout.deployed_models(endpoint)) == (CHAMPION, CHALLENGER)
    with pytest.raises(CommandError, match="exactly two deployed models"):
        rollout.canary_pair([CHAMPION])
    with pytest.raises(CommandError, match="which is the canary"):
        rollout.canary_pair([Deployed("1", "a", 50), Deployed("2", "b", 50)])


@pytest.mark.parametrize("decision", ["promote", "rollback", "wait"])
def test_planned_calls_bind_to_the_endpoint_methods(decision):
    calls = rollout.plan(Verdict(decision, []), CHAMPION, CHALLENGER)
    for method, kwargs in calls:
        inspect.signature(getattr(aiplatform.Endpoint, method)).bind(None, **kwargs)
    if decision == "promote":
        assert calls[0][1]["traffic_split"] == {"222": 100} and calls[1][1]["deployed_model_id"] == "111"
    elif decision == "rollback":
        assert calls == [("undeploy", {"deployed_model_id": "222", "traffic_split": {"111": 100}, "sync": True})]
    else:
        assert calls == []


def test_canary_deploy_dry_run_and_its_refusals(settings, monkeypatch, capsys):
    from trainer.models.registry import ModelRegistry

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    registry = ModelRegistry.from_settings(settings)
    champion = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.90}, "custom", dataset_version="v-1")
    registry.promote(champion)
    registry.register({"metadata.json": b"{}"}, {"accuracy": 0.91}, "custom", dataset_version="v-1")
    assert cli.main(["deploy-model", "candidate", "--canary", "10", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["deploy"]["traffic_percentage"] == 10 and printed["upload"]["is_default_version"] is False
    assert cli.main(["deploy-model", "champion", "--canary", "10", "--dry-run"]) == 1
    assert "is the champion" in capsys.readouterr().err
    assert cli.main(["deploy-model", "candidate", "--canary", "100", "--dry-run"]) == 1


def test_registry_records_rollout_events(settings):
    from trainer.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    version = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="v-1")
    registry.record("canary-rollback", version, reasons=["error rate 2.00% > 1.00%"], target="vertex")
    event = registry.read_index()["events"][-1]
    assert event["action"] == "canary-rollback" and event["reasons"] == ["error rate 2.00% > 1.00%"]


def test_rollout_needs_the_gcp_target(settings, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    assert cli.main(["rollout"]) == 1 and "talks to Vertex AI" in capsys.readouterr().err
