"""`trainer rollout`'s words, exactly: the lines it prints, its dry runs, the operator's token it sends and the
arguments each path hands on. An operator acts on these lines (and a script may parse the JSON one), so a changed
word or a dropped figure is a bug; `make mutate` found them unpinned."""

import http.server
import json
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from google.cloud import monitoring_v3

from contracts.rollout import Agreement, Evidence, Verdict
from trainer import cli
from trainer.cloud import rollout
from trainer.models.registry import ModelRegistry


@pytest.fixture
def service():
    """A loopback /monitoring/rollout answering the queued documents (the last one repeated); it records each
    request's path and Authorization header."""
    state = SimpleNamespace(queue=[], seen=[], status=200)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps(state.queue.pop(0) if len(state.queue) > 1 else state.queue[0]).encode()
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def two_versions(settings, monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    registry = ModelRegistry.from_settings(settings)
    champion = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.90}, "custom", dataset_version="v-1")
    registry.promote(champion)
    candidate = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.91}, "custom", dataset_version="v-1")
    return registry, champion, candidate


def _document(decision: dict, challenger: str) -> dict:
    return {
        "mode": "canary",
        "champion": {"version": "champ"},
        "challenger": {"version": challenger},
        "agreement": {"rate": 0.5},
        "ignored": "not printed",
        "verdict": decision,
    }


def test_the_local_verdict_line_and_the_promotion_line(two_versions, service, capsys):
    registry, _, candidate = two_versions
    decision = {"decision": "promote", "codes": ["passed"], "reasons": ["all good", "really"]}
    service.queue.append(_document(decision, candidate))
    assert cli.main(["rollout", "--service-url", service.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0]) == {
        "mode": "canary",
        "champion": {"version": "champ"},
        "challenger": {"version": candidate},
        "agreement": {"rate": 0.5},
        **decision,
    }
    assert lines[1:] == ["promote: all good; really"]
    assert service.seen == [("/monitoring/rollout", None)]  # no token in the environment: no header
    assert registry.read_index().aliases["champion"] == candidate


def test_the_local_dry_runs_say_what_would_happen_and_where(two_versions, service, capsys):
    registry, champion, candidate = two_versions
    service.queue.append(_document({"decision": "promote", "reasons": ["r"]}, candidate))
    assert cli.main(["rollout", "--service-url", service.url, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [f"would promote {candidate} to champion and record canary-promote in {registry.index_uri}"]
    service.queue[:] = [_document({"decision": "rollback", "reasons": ["r"]}, candidate)]
    assert cli.main(["rollout", "--service-url", service.url, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [f"would record the canary's end and record canary-rollback in {registry.index_uri}"]
    index = registry.read_index()
    assert index.aliases["champion"] == champion and not [e for e in index.events if "canary" in e["action"]]


def test_a_public_verdict_gives_its_codes_as_the_reasons(two_versions, service, capsys):
    """Without the operator's token the service shows codes only (reasons may be absent or empty)."""
    registry, _, candidate = two_versions
    service.queue.append(_document({"decision": "rollback", "codes": ["error_rate_high", "latency_high"]}, candidate))
    assert cli.main(["rollout", "--service-url", service.url]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["rollback: error_rate_high; latency_high"]
    event = registry.read_index().events[-1]
    assert (event["action"], event["reasons"], event["mode"]) == (
        "canary-rollback",
        ["error_rate_high", "latency_high"],
        "canary",
    )
    codes = ["too_few_clients", "too_few_requests"]
    service.queue[:] = [_document({"decision": "wait", "codes": codes, "reasons": []}, candidate)]
    assert cli.main(["rollout", "--service-url", service.url]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["wait: too_few_clients; too_few_requests"]


def test_the_operator_token_is_sent_as_a_bearer(service, monkeypatch):
    service.queue.append({"mode": "shadow", "verdict": {"decision": "wait"}})
    monkeypatch.setenv("ADMIN_TOKEN", "s3cret")
    rollout.read_service_verdict(service.url)
    monkeypatch.setenv("ADMIN_TOKEN", "")
    rollout.read_service_verdict(service.url)
    assert service.seen == [("/monitoring/rollout", "Bearer s3cret"), ("/monitoring/rollout", None)]


def test_a_service_without_a_rollout_names_its_own_reason(service):
    service.queue.append({"mode": "off", "detail": "CHALLENGER=candidate resolves to the champion"})
    with pytest.raises(Exception) as raised:
        rollout.read_service_verdict(service.url)
    assert str(raised.value) == (
        f"the service at {service.url} runs no rollout (CHALLENGER=candidate resolves to the champion): restart it "
        "with CHALLENGER=candidate ROLLOUT_MODE=shadow (or canary)"
    )


def test_the_local_target_defaults_to_the_local_service_port():
    assert rollout.LOCAL_SERVICE_URL == "http://127.0.0.1:8080"


# ---- the fleet through PromQL ------------------------------------------------------------------------------------


def _fleet(monkeypatch, decision: Verdict):
    """trainer.cloud.promql as run_fleet sees it: the asker and the verdict, each call recorded."""
    from trainer.cloud import promql

    calls = []
    evidence = Evidence(clients=12, requests=600.0, errors=0.0, agreement=Agreement(599, 600), latency_ratio=1.5)

    def fleet_verdict(ask, champion, challenger, thresholds, window):
        calls.append((ask, champion, challenger, thresholds, window))
        return decision, evidence

    monkeypatch.setattr(promql, "fleet_verdict", fleet_verdict)
    monkeypatch.setattr(promql, "http_asker", lambda url: ("asker", url))
    return calls


def test_the_fleet_verdict_is_asked_for_the_resolved_versions_and_printed(two_versions, settings, monkeypatch, capsys):
    registry, champion, candidate = two_versions
    calls = _fleet(monkeypatch, Verdict("promote", ["fleet passed"], ["passed"]))
    assert cli.main(["rollout", "--prometheus-url", "http://prom:9090", "--window"]) == 0
    assert calls == [(("asker", "http://prom:9090"), champion, candidate, settings.rollout.thresholds(), "60m")]
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0]) == {
        "champion": champion,
        "challenger": candidate,
        "evidence": {
            "clients": 12,
            "requests": 600.0,
            "errors": 0.0,
            "agreement": {"agreed": 599, "compared": 600},
            "latency_ratio": 1.5,
        },
        "decision": "promote",
        "codes": ["passed"],
        "reasons": ["fleet passed"],
    }
    assert lines[1:] == ["promote: fleet passed"]
    event = registry.read_index().events[-1]
    assert (event["action"], event["version"], event["target"], event["source"], event["reasons"]) == (
        "canary-promote",
        candidate,
        "local",
        "promql",
        ["fleet passed"],
    )
    assert registry.read_index().aliases["champion"] == candidate


def test_the_fleet_counts_everything_without_window_and_names_its_challenger(two_versions, monkeypatch, capsys):
    registry, champion, _ = two_versions
    calls = _fleet(monkeypatch, Verdict("wait", ["too few"], ["too_few_clients"]))
    argv = ["rollout", "--prometheus-url", "http://p", "--challenger", champion, "--dry-run"]
    assert cli.main(argv) == 0
    assert [call[1:3] + call[4:] for call in calls] == [(champion, champion, None)]
    assert capsys.readouterr().out.splitlines()[1:] == ["wait: too few"]


def test_the_fleet_watch_asks_again_until_decided(two_versions, monkeypatch, capsys):
    registry, _, candidate = two_versions
    from trainer.cloud import promql

    answers, calls = [Verdict("wait", ["w"]), Verdict("rollback", ["bad"])], []

    def fleet_verdict(ask, champion, challenger, thresholds, window):
        calls.append(champion)
        return answers.pop(0), Evidence(1, 1.0, 0.0, None, None)

    monkeypatch.setattr(promql, "fleet_verdict", fleet_verdict)
    monkeypatch.setattr(promql, "http_asker", lambda url: url)
    assert cli.main(["rollout", "--prometheus-url", "http://p", "--watch", "--interval", "0.01", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(calls) == 2 and [json.loads(line)["decision"] for line in out[:2]] == ["wait", "rollback"]
    assert out[2:] == [f"would record the canary's end and record canary-rollback in {registry.index_uri}"]


# ---- gcp target: the Vertex AI endpoint ---------------------------------------------------------------------------


class _Endpoint:
    """Two deployed models; the challenger's figures come from `figures`, one tuple per look."""

    def __init__(self, calls, champion, challenger):
        self.calls, self.champion, self.challenger = calls, champion, challenger
        self.traffic_split = {"1": 90, "2": 10}

    def list_models(self):
        return [
            SimpleNamespace(id="1", display_name=f"fmnist-{self.champion}"),
            SimpleNamespace(id="2", display_name=f"fmnist-{self.challenger}"),
        ]

    def update(self, **kwargs):
        self.calls.append(("update", kwargs))

    def undeploy(self, **kwargs):
        self.calls.append(("undeploy", kwargs))


@pytest.fixture
def vertex(gcs_settings, monkeypatch):
    """`trainer --env dev rollout` against a recorded endpoint and Cloud Monitoring; the challenger's request count
    per look is taken from `looks` (1000 requests pass the default thresholds, 10 wait)."""
    from google.cloud import aiplatform

    from trainer.models.registry import register_external_version

    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    registry = ModelRegistry.from_settings(gcs_settings)
    champion, challenger = (
        register_external_version(gcs_settings, source="custom", metrics={"accuracy": a}, dataset_version="d")
        for a in (0.90, 0.95)
    )
    registry.promote(champion)
    state = SimpleNamespace(calls=[], looks=[1000], requests=[], registry=registry, moved=[])
    state.champion, state.challenger, state.settings = champion, challenger, gcs_settings

    class Client:
        def list_time_series(self, request):
            state.requests.append(request)
            model = request["filter"].rsplit('"', 2)[1]
            metric = request["filter"].split('"')[1].rsplit("/", 1)[1]
            count = 1000 if model == "1" else state.looks[0]
            if metric == "prediction_latencies" and model == "2":
                state.looks[:] = state.looks[1:] or state.looks
            value = {"prediction_count": count, "error_count": 0, "prediction_latencies": 10.0}[metric]
            kind = "double_value" if metric == "prediction_latencies" else "int64_value"
            return [monitoring_v3.TimeSeries(points=[monitoring_v3.Point(value={kind: value})])]

    def endpoint(name):
        state.calls.append(("endpoint", name))
        return _Endpoint(state.calls, champion, challenger)

    def move(sdk, parent, index, version):
        state.moved.append((sdk, parent, index.aliases["champion"], version))
        return ["champion", "default"]

    monkeypatch.setattr(aiplatform, "init", lambda **kwargs: state.calls.append(("init", kwargs)))
    monkeypatch.setattr(aiplatform, "Endpoint", endpoint)
    monkeypatch.setattr(monitoring_v3, "MetricServiceClient", Client)
    monkeypatch.setattr(rollout, "move_model_aliases", move)
    return state


def test_a_vertex_promotion_prints_its_figures_moves_traffic_then_the_model_registry(vertex, monkeypatch, capsys):
    from google.cloud import aiplatform

    from trainer.cloud import promotion

    approved = []

    def approve(settings, version, runner=None):  # the promoter's approval job: it gates and promotes (issue 25)
        approved.append(version)
        vertex.registry.promote(version)
        return 0

    monkeypatch.setattr(promotion, "approve", approve)
    before = int(time.time())
    assert cli.main(["--env", "dev", "rollout"]) == 0
    settings, names = vertex.settings, vertex.settings.names
    assert vertex.calls == [
        ("init", {"project": settings.project_id, "location": settings.region}),
        ("endpoint", names.endpoint_name),
        ("update", {"traffic_split": {"2": 100}}),
        ("undeploy", {"deployed_model_id": "1", "sync": True}),
    ]
    assert vertex.moved == [(aiplatform, names.parent_model_name, vertex.challenger, vertex.challenger)]
    window = settings.rollout.window_minutes * 60
    for request in vertex.requests:
        start, end = request["interval"]["start_time"]["seconds"], request["interval"]["end_time"]["seconds"]
        assert end - start == window and before <= end <= time.time()
    lines = capsys.readouterr().out.splitlines()
    printed = json.loads(lines[0])
    figures = {"requests": 1000, "errors": 0, "latency_p99_ms": 10.0, "clients": None}
    assert printed["champion"] == {"version": vertex.champion, **figures}
    assert printed["challenger"] == {"version": vertex.challenger, **figures}
    assert printed["decision"] == "promote" and printed["codes"] and printed["reasons"]
    reasons = "; ".join(printed["reasons"])
    index_uri = vertex.registry.index_uri
    assert lines[1:] == [
        f"Vertex AI Model Registry: {vertex.challenger} now has champion, default",
        f"canary-promote of {vertex.challenger} not written to {index_uri}: on Google Cloud only the promoter "
        "writes it (this output is the record)",
        f"promote: {reasons}",
    ]
    assert approved == [vertex.challenger]  # through the promoter's approval job, whose promote is the index's event
    event = vertex.registry.read_index().events[-1]
    assert (event["action"], event["version"]) == ("promote", vertex.challenger)


def test_a_vertex_dry_run_prints_the_calls_and_changes_nothing(vertex, capsys):
    assert cli.main(["--env", "dev", "rollout", "--dry-run"]) == 0
    assert vertex.calls[2:] == [] and vertex.moved == []
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "would call Endpoint.update({'traffic_split': {'2': 100}})",
        "would call Endpoint.undeploy({'deployed_model_id': '1', 'sync': True})",
    ]
    assert vertex.registry.read_index().aliases["champion"] == vertex.champion


def test_a_vertex_wait_changes_nothing_and_watch_looks_again(vertex, capsys):
    vertex.looks[:] = [10]
    events = len(vertex.registry.read_index().events)
    assert cli.main(["--env", "dev", "rollout"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["decision"] == "wait"
    assert vertex.calls[2:] == [] and len(vertex.registry.read_index().events) == events
    vertex.looks[:] = [10, 10, 1000]
    assert cli.main(["--env", "dev", "rollout", "--watch", "--interval", "0.01", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["decision"] for line in lines[:3]] == ["wait", "wait", "promote"]
    assert lines[3:] == [
        "would call Endpoint.update({'traffic_split': {'2': 100}})",
        "would call Endpoint.undeploy({'deployed_model_id': '1', 'sync': True})",
    ]


def test_the_gcp_fleet_is_judged_through_cloud_monitoring_promql(vertex, monkeypatch, capsys):
    """`--fleet` on gcp: Cloud Monitoring's PromQL API for the project, the Cloud Run fleet named in the event."""
    from trainer.cloud import promql

    asked, seen = [], []
    monkeypatch.setattr(promql, "google_asker", lambda project: asked.append(project) or "google")

    def fleet_verdict(ask, champion, challenger, thresholds, window):
        seen.append((ask, champion, challenger, window))
        return Verdict("rollback", ["fleet errors"], ["error_rate_high"]), Evidence(12, 600.0, 30.0, None, None)

    monkeypatch.setattr(promql, "fleet_verdict", fleet_verdict)
    before = vertex.registry.read_index()
    assert cli.main(["--env", "dev", "rollout", "--fleet"]) == 0
    assert asked == [vertex.settings.project_id]
    assert seen == [("google", vertex.champion, vertex.challenger, None)]
    assert vertex.calls == []  # the Vertex endpoint is not touched
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"canary-rollback of {vertex.challenger} not written to {vertex.registry.index_uri}: on Google Cloud only "
        "the promoter writes it (this output is the record)",
        "rollback: fleet errors",
    ]
    assert vertex.registry.read_index() == before  # a rollback on gcp leaves the promoter's index as it is


def test_the_vertex_verdict_uses_the_configured_thresholds(vertex, monkeypatch, capsys):
    """FMNIST_ROLLOUT__MIN_REQUESTS=5000: the 1,000 requests that promote under the defaults now wait."""
    monkeypatch.setenv("FMNIST_ROLLOUT__MIN_REQUESTS", "5000")
    assert cli.main(["--env", "dev", "rollout"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["decision"] == "wait" and "too_few_requests" in printed["codes"]
    assert vertex.calls[2:] == []


def test_a_trailing_slash_is_not_doubled_in_the_route_an_error_names(service):
    service.status = 503
    service.queue.append({"error": "starting"})
    with pytest.raises(Exception) as raised:
        rollout.read_service_verdict(service.url + "/")
    assert str(raised.value) == f'GET {service.url}/monitoring/rollout answered 503: {{"error": "starting"}}'
