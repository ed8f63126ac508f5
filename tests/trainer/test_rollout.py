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
    event = registry.read_index().to_json()["events"][-1]
    assert event["action"] == "canary-rollback" and event["reasons"] == ["error rate 2.00% > 1.00%"]


def test_local_rollout_without_a_service_says_what_to_start(settings, monkeypatch, capsys):
    from lifecycle.served import free_port

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["rollout", "--service-url", url]) == 1
    assert f"cannot reach the prediction service at {url}" in capsys.readouterr().err


# ---- local target: the service's /monitoring/rollout verdict, acted on in the registry ---------------------------


def _payload(decision: str, challenger: str, reasons=("r",)) -> dict:
    """A /monitoring/rollout document as the service writes it (service/rollout.build_report), trimmed."""
    stats = {"requests": 600, "errors": 0, "error_rate": 0.0, "inference_p50_ms": 0.2, "inference_p99_ms": 0.4}
    return {
        "mode": "shadow",
        "champion": {"version": "champ", "role": "champion", **stats},
        "challenger": {"version": challenger, "role": "challenger", **stats},
        "agreement": {"agreed": 599, "compared": 600, "rate": 599 / 600, "interval_95": [0.99, 1.0]},
        "verdict": {"decision": decision, "reasons": list(reasons)},
    }


@pytest.fixture
def fake_service():
    """A loopback HTTP server answering /monitoring/rollout with the queued payloads, the last one repeated."""
    import http.server
    import threading

    queue: list[dict] = []
    served: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            body = json.dumps(queue.pop(0) if len(queue) > 1 else queue[0]).encode()
            self.send_response(200 if self.path == "/monitoring/rollout" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", queue=queue, served=served)
    server.shutdown()
    server.server_close()


def _two_versions(settings):
    from trainer.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    champion = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.90}, "custom", dataset_version="v-1")
    registry.promote(champion)
    candidate = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.91}, "custom", dataset_version="v-1")
    return registry, champion, candidate


def _main(settings, monkeypatch, *argv) -> int:
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    return cli.main(["rollout", *argv])


def test_local_promote_moves_the_champion_and_logs_the_reasons(settings, monkeypatch, fake_service, capsys):
    registry, champion, candidate = _two_versions(settings)
    fake_service.queue.append(_payload("promote", candidate, ["challenger passed every check on 600 requests"]))
    assert _main(settings, monkeypatch, "--service-url", fake_service.url, "--dry-run") == 0
    assert "would promote" in capsys.readouterr().out
    assert registry.read_index().to_json()["aliases"]["champion"] == champion  # a dry run changes nothing
    assert _main(settings, monkeypatch, "--service-url", fake_service.url) == 0
    index = registry.read_index().to_json()
    assert index["aliases"]["champion"] == candidate
    event = index["events"][-1]
    assert (event["action"], event["version"], event["target"]) == ("canary-promote", candidate, "local")
    assert event["reasons"] == ["challenger passed every check on 600 requests"]


def test_local_rollback_records_the_end_and_keeps_the_champion(settings, monkeypatch, fake_service):
    registry, champion, candidate = _two_versions(settings)
    reason = "agreement with the champion 61.00% (95 % interval 57.00%-65.00%) is below 98.00%"
    fake_service.queue.append(_payload("rollback", candidate, [reason]))
    assert _main(settings, monkeypatch, "--service-url", fake_service.url) == 0
    index = registry.read_index().to_json()
    assert index["aliases"]["champion"] == champion
    assert index["events"][-1] | {"at": None} == {
        "at": None,
        "action": "canary-rollback",
        "version": candidate,
        "reasons": [reason],
        "target": "local",
        "mode": "shadow",
    }


def test_local_watch_waits_until_the_verdict_is_in(settings, monkeypatch, fake_service, capsys):
    registry, _, candidate = _two_versions(settings)
    fake_service.queue += [_payload("wait", candidate), _payload("wait", candidate), _payload("rollback", candidate)]
    assert _main(settings, monkeypatch, "--service-url", fake_service.url, "--watch", "--interval", "0.01") == 0
    assert fake_service.served == ["/monitoring/rollout"] * 3
    assert registry.read_index().to_json()["events"][-1]["action"] == "canary-rollback"
    fake_service.queue[:] = [_payload("wait", candidate)]
    events = len(registry.read_index().to_json()["events"])
    assert _main(settings, monkeypatch, "--service-url", fake_service.url) == 0  # no --watch: one look
    assert "wait: r" in capsys.readouterr().out and len(registry.read_index().to_json()["events"]) == events


def test_local_promote_still_passes_the_quality_gate(settings, monkeypatch, fake_service, capsys):
    from trainer.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    champion = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.90}, "custom", dataset_version="v-1")
    registry.promote(champion)
    worse = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.80}, "custom", dataset_version="v-1")
    fake_service.queue.append(_payload("promote", worse))
    assert _main(settings, monkeypatch, "--service-url", fake_service.url) == 3  # GateRefused's exit status
    assert "refused" in capsys.readouterr().err
    assert registry.read_index().to_json()["aliases"]["champion"] == champion


def test_local_rollout_refuses_a_service_without_a_challenger(settings, monkeypatch, fake_service, capsys):
    fake_service.queue.append({"mode": "off", "detail": "no CHALLENGER configured"})
    assert _main(settings, monkeypatch, "--service-url", fake_service.url) == 1
    assert "runs no rollout" in capsys.readouterr().err


def test_a_promotion_moves_the_vertex_model_registry_aliases_over_the_wire(dev):
    """The real SDK against the local Vertex AI REST fake: the challenger's Vertex version (found through the alias
    deploy-model gave it, its registry id) is sent every registry alias that now points at it, and `default`."""
    from tests.vertex_fake import vertex_over_the_wire
    from trainer.cloud.rollout import move_model_aliases

    parent = dev.names.parent_model_name
    from contracts.registry_index import RegistryIndex

    index = RegistryIndex(aliases={"champion": "v2", "candidate": "v2", "previous": "v1"})
    with vertex_over_the_wire(dev.project_id, dev.region) as fake:
        fake.resources[f"{parent}@v2"] = {"name": parent, "versionId": "7", "versionAliases": ["v2", "candidate"]}
        assert move_model_aliases(aiplatform, parent, index, "v2") == ["candidate", "champion", "default"]
    merged = fake.only("POST", f"{parent}@7:mergeVersionAliases")
    assert sorted(merged.body["versionAliases"]) == ["candidate", "champion", "default"]
    assert fake.summary()[0] == f"GET {parent}@v2"


class PromoterJob:
    """The Run Admin API session the promotion JobRunner talks to: each execution is recorded and, when `promotes`,
    does what the promoter's approval job does (the gate, then the champion alias) before its operation ends."""

    def __init__(self, registry, promotes: bool):
        self.registry, self.promotes, self.bodies = registry, promotes, []

    def request(self, method, url, data=None, timeout=None):
        self.bodies.append((url, json.loads(data)))
        if self.promotes:
            self.registry.promote(self.bodies[-1][1]["overrides"]["containerOverrides"][0]["args"][1])
        reply = {"name": "projects/p/locations/r/operations/op-1", "done": True}
        return SimpleNamespace(status_code=200, json=lambda: reply, text="")


def _gcp_actions(gcs_settings, promotes: bool):
    from trainer.cloud.promotion import JobRunner

    registry, champion, candidate = _two_versions(gcs_settings)
    job = PromoterJob(registry, promotes)
    actions = rollout.RegistryActions(gcs_settings, registry, JobRunner(gcs_settings, _session=job, poll_s=0))
    return actions, job, champion, candidate


def test_on_google_cloud_a_promote_verdict_goes_through_the_promoters_approval_job(gcs_settings, capsys):
    """Only the promoter writes the index there: the verdict executes the approval job with the challenger's
    version (as `trainer promotion approve` does) and writes nothing itself."""
    from contracts.cloud import PROMOTION_APPROVE_JOB

    actions, job, champion, candidate = _gcp_actions(gcs_settings, promotes=True)
    assert rollout.act_on_registry(actions, "promote", candidate, ["ok"], dry_run=True, target="cloud-run") == 0
    assert job.bodies == [] and "would ask the promoter's approval job" in capsys.readouterr().out
    before = actions.registry.read_index().events
    assert rollout.act_on_registry(actions, "promote", candidate, ["ok"], dry_run=False, target="cloud-run") == 0
    ((url, body),) = job.bodies
    assert url.endswith(f"/jobs/{PROMOTION_APPROVE_JOB}:run")
    assert body == {"overrides": {"containerOverrides": [{"args": ["--version", candidate]}]}}
    index = actions.registry.read_index()
    assert index.alias("champion") == candidate
    assert [e["action"] for e in index.events[len(before) :]] == ["promote"]  # the promoter's; no canary-promote
    assert "not written to" in capsys.readouterr().out


def test_on_google_cloud_a_promotion_the_promoter_refuses_stops_the_rollout(gcs_settings):
    from trainer.errors import GateRefused

    actions, job, champion, candidate = _gcp_actions(gcs_settings, promotes=False)
    with pytest.raises(GateRefused, match=f"the promoter did not promote {candidate}"):
        rollout.act_on_registry(actions, "promote", candidate, ["ok"], dry_run=False, target="vertex")
    assert len(job.bodies) == 1 and actions.registry.read_index().alias("champion") == champion


def test_on_google_cloud_a_rollback_verdict_writes_nothing_to_the_index(gcs_settings, capsys):
    import storage

    actions, job, champion, candidate = _gcp_actions(gcs_settings, promotes=True)
    before = storage.read_bytes(actions.registry.index_uri)
    assert rollout.act_on_registry(actions, "rollback", candidate, ["errors"], dry_run=False, target="vertex") == 0
    assert storage.read_bytes(actions.registry.index_uri) == before and job.bodies == []
    assert "only the promoter writes it" in capsys.readouterr().out


def test_registry_rollback_on_google_cloud_names_the_promoters_command(gcs_settings):
    from trainer.errors import RegistryError
    from trainer.models import registry as registry_module

    registry, champion, candidate = _two_versions(gcs_settings)
    registry.promote(candidate)
    with pytest.raises(RegistryError, match=f"promotion approve {champion}"):
        registry_module.run(SimpleNamespace(action="rollback", to=None), gcs_settings)
    assert registry.read_index().alias("champion") == candidate
