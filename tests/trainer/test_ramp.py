"""`trainer ramp` (trainer/cloud/ramp.py): the step verdict, the state machine over the registry's event log, and
the requests that move Cloud Run's canary share and the Vertex AI endpoint's traffic split."""

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from google.cloud import aiplatform

from contracts.rollout import Agreement, Evidence, Thresholds
from trainer.cloud import ramp
from trainer.cloud.rollout import Deployed
from trainer.errors import CommandError
from trainer.models.registry import ModelRegistry

THRESHOLDS = Thresholds(min_clients=5, min_requests=300, max_error_rate=0.01, min_agreement=0.98, max_latency_ratio=1.5)
STEPS = [5.0, 25.0, 50.0, 100.0]


def _evidence(requests, errors=0.0, agreed=None, clients=10, latency=1.0):
    compared = requests
    agreement = Agreement(requests if agreed is None else agreed, compared) if compared else None
    return Evidence(clients, requests, errors, agreement, latency)


@pytest.mark.parametrize(
    "evidence, decision, codes",
    [
        (
            _evidence(0, clients=0),
            "wait",
            ["too_few_clients", "too_few_requests", "error_rate_uncertain", "agreement_unmeasured"],
        ),
        (_evidence(100), "wait", ["too_few_requests", "error_rate_uncertain", "agreement_uncertain"]),
        (_evidence(200, latency=2.0), "wait", ["too_few_requests", "error_rate_uncertain"]),  # noisy: not yet
        (_evidence(400, clients=4), "wait", ["too_few_clients"]),
        (_evidence(400), "advance", ["passed"]),
        (_evidence(100, errors=10), "rollback", ["error_rate_high"]),
        (_evidence(100, agreed=80), "rollback", ["agreement_low"]),
        (_evidence(400, latency=2.0), "rollback", ["latency_high"]),
        (_evidence(400, latency=2.0, clients=4), "wait", ["too_few_clients"]),  # the guard needs enough clients
    ],
)
def test_the_step_verdict(evidence, decision, codes):
    verdict = ramp.judge_step(evidence, THRESHOLDS, alpha=0.05, steps=4)
    assert (verdict.decision, verdict.codes) == (decision, codes), verdict.reasons


def test_advancing_needs_321_clean_requests_at_one_percent_and_rolling_back_splits_alpha_over_the_steps():
    """Exact counts: zero errors and full agreement are shown under 1 % (and 2 % disagreement) after 321 credited
    requests; 10 % errors are shown over 1 % after 31 requests alone, 47 with alpha split over 2 x 4 tests."""
    assert ramp.judge_step(_evidence(320), THRESHOLDS, 0.05, 4).decision == "wait"
    assert ramp.judge_step(_evidence(321), THRESHOLDS, 0.05, 4).decision == "advance"
    first = next(
        n
        for n in range(1, 500)
        if ramp.judge_step(_evidence(n, 0.1 * n), THRESHOLDS, 0.05, 4).codes[0] == "error_rate_high"
    )
    assert first == 47


def _registry(tmp_path, champion_accuracy=0.90, challenger_accuracy=0.91):
    registry = ModelRegistry(str(tmp_path / "models"))
    champion = registry.register(
        {"metadata.json": b"{}"}, {"accuracy": champion_accuracy}, "custom", dataset_version="d"
    )
    registry.promote(champion)
    challenger = registry.register(
        {"metadata.json": b"{}"}, {"accuracy": challenger_accuracy}, "custom", dataset_version="d"
    )
    return registry, champion, challenger


class Shares:
    """Records what the ramp asked of a platform (the real actuators are tested below on their requests)."""

    name = "recorded"

    def __init__(self):
        self.moves, self.moved_by_others = [], False

    def set_share(self, percent):
        self.moves.append(percent)

    def hold_share(self, percent):
        if not self.moved_by_others:
            return False
        self.moved_by_others = False
        self.moves.append(("restored", percent))
        return True

    def finish(self, promoted):
        self.moves.append("promoted" if promoted else "rolled back")


class Clock:
    def __init__(self):
        self.now = datetime.now(UTC)

    def __call__(self):
        return self.now


def _tick(registry, evidence, shares, clock, seen):
    def read(champion, challenger, seconds):
        seen.append(seconds)
        return evidence

    return ramp.tick(
        registry, "candidate", read, [shares], THRESHOLDS, steps=STEPS, alpha=0.05, who="user:test", now=clock
    )


def test_a_good_challenger_climbs_every_step_and_is_promoted(tmp_path):
    registry, champion, challenger = _registry(tmp_path)
    shares, clock, seen = Shares(), Clock(), []
    ticks = [_tick(registry, _evidence(400), shares, clock, seen) for _ in range(5)]
    assert [t.action for t in ticks] == ["start", "step", "step", "step", "promote"]
    assert [t.percent for t in ticks] == [5.0, 25.0, 50.0, 100.0, 100.0]  # the printed share after each tick
    assert shares.moves == [5.0, 25.0, 50.0, 100.0, "promoted"]
    index = registry.read_index()
    assert index.alias("champion") == challenger
    log = [(e["action"], e.get("percent"), e.get("previous")) for e in index.events if e["action"].startswith("ramp")]
    assert log == [
        ("ramp-step", 5.0, 0.0),
        ("ramp-step", 25.0, 5.0),
        ("ramp-step", 50.0, 25.0),
        ("ramp-step", 100.0, 50.0),
        ("ramp-promote", 100.0, 100.0),
    ]
    assert {e["trigger"] for e in index.events if e["action"].startswith("ramp")} == {"user:test"}
    assert {e["version"] for e in index.events if e["action"].startswith("ramp")} == {challenger}
    assert index.events[-1]["champion"] == champion and index.events[-1]["evidence"]["requests"] == 400
    assert _tick(registry, _evidence(400), shares, clock, seen).action == "done"  # nothing after the end


def test_a_step_waits_without_moving_and_reads_only_what_came_after_it(tmp_path):
    registry, _, _ = _registry(tmp_path)
    shares, clock, seen = Shares(), Clock(), []
    assert _tick(registry, _evidence(10), shares, clock, seen).action == "start"
    clock.now += timedelta(seconds=90)
    events = len(registry.read_index().events)
    assert _tick(registry, _evidence(10), shares, clock, seen).action == "wait"
    assert shares.moves == [5.0] and len(registry.read_index().events) == events  # a wait writes nothing
    assert 89 <= seen[-1] <= 92  # seconds since the step's event (second resolution)


def test_a_bad_challenger_is_rolled_back_and_stays_off(tmp_path):
    registry, champion, challenger = _registry(tmp_path)
    shares, clock, seen = Shares(), Clock(), []
    _tick(registry, _evidence(400), shares, clock, seen)
    result = _tick(registry, _evidence(100, errors=10), shares, clock, seen)
    assert (result.action, result.verdict.codes) == ("rollback", ["error_rate_high"])
    assert shares.moves == [5.0, "rolled back"]
    index = registry.read_index()
    assert index.alias("champion") == champion
    assert index.events[-1]["action"] == "ramp-rollback" and index.events[-1]["codes"] == ["error_rate_high"]
    assert _tick(registry, _evidence(400), shares, clock, seen).action == "done"
    assert shares.moves == [5.0, "rolled back"]


def test_the_quality_gate_still_has_the_last_word(tmp_path):
    registry, champion, _ = _registry(tmp_path, challenger_accuracy=0.80)  # live traffic fine, gate says no
    shares, clock, seen = Shares(), Clock(), []
    actions = [_tick(registry, _evidence(400), shares, clock, seen).action for _ in range(5)]
    assert actions == ["start", "step", "step", "step", "refused"]
    assert shares.moves[-1] == "rolled back" and registry.read_index().alias("champion") == champion
    assert "refused" in registry.read_index().events[-1]["gate"]


def test_a_dry_run_changes_nothing(tmp_path):
    registry, _, _ = _registry(tmp_path)
    shares, clock = Shares(), Clock()
    result = ramp.tick(
        registry,
        "candidate",
        lambda *a: _evidence(400),
        [shares],
        THRESHOLDS,
        steps=STEPS,
        alpha=0.05,
        who="user:test",
        now=clock,
        dry_run=True,
    )
    assert result.action == "start" and shares.moves == [] and registry.read_index().events[-1]["action"] == "register"


@pytest.mark.parametrize("steps", [[], [5, 25], [25, 5, 100], [0, 100], [5, 5, 100]])
def test_steps_must_climb_to_100(steps):
    with pytest.raises(CommandError, match="end at 100"):
        ramp.validate_steps(steps)


def test_the_trigger_names_the_cloud_run_execution():
    environ = {"CLOUD_RUN_JOB": "fmnist-ramp", "CLOUD_RUN_EXECUTION": "fmnist-ramp-x7k2p"}
    assert ramp.trigger(environ) == "cloud-run-job:fmnist-ramp/fmnist-ramp-x7k2p"
    assert ramp.trigger({}).startswith("user:")


# ---- the platforms' requests --------------------------------------------------------------------------------------


def _cloud_run_service(mode="canary"):
    return {
        "name": "projects/p/locations/r/services/fmnist",
        "etag": '"abc"',
        "template": {
            "containers": [
                {
                    "name": "service",
                    "env": [
                        {"name": "CHALLENGER", "value": "candidate"},
                        {"name": "ROLLOUT_MODE", "value": mode},
                        {"name": "CANARY_PERCENT", "value": "5"},
                    ],
                },
                {"name": "collector", "env": []},
            ]
        },
    }


def test_the_cloud_run_request_sets_canary_percent_on_the_serving_container_only():
    service = _cloud_run_service()
    body = ramp.cloud_run_share_body(service, 25.0)
    serving, sidecar = body["template"]["containers"]
    assert {e["name"]: e["value"] for e in serving["env"]}["CANARY_PERCENT"] == "25"
    assert [e["name"] for e in serving["env"]].count("CANARY_PERCENT") == 1
    assert sidecar == {"name": "collector", "env": []} and body["etag"] == '"abc"'  # a concurrent change: refused
    assert service["template"]["containers"][0]["env"][2]["value"] == "5"  # the read is not modified


def test_the_cloud_run_request_refuses_a_service_without_a_canary():
    with pytest.raises(CommandError, match="ROLLOUT_MODE is 'shadow'"):
        ramp.cloud_run_share_body(_cloud_run_service("shadow"), 25.0)
    bare = {"name": "s", "template": {"containers": [{"name": "service", "env": []}]}}
    with pytest.raises(CommandError, match="expected one container with CHALLENGER"):
        ramp.cloud_run_share_body(bare, 25.0)


def test_the_vertex_split_follows_the_steps_and_the_end():
    deployed = [Deployed("111", "v1", 95), Deployed("222", "v2", 5)]
    assert ramp.vertex_split_calls(deployed, "v1", "v2", 25.0) == [
        ("update", {"traffic_split": {"222": 25, "111": 75}})
    ]
    assert ramp.vertex_split_calls(deployed, "v1", "v2", None, promoted=True)[0] == (
        "update",
        {"traffic_split": {"222": 100}},
    )
    assert ramp.vertex_split_calls(deployed, "v1", "v3", 25.0) == []  # not on the endpoint: Cloud Run only


def test_the_vertex_split_over_the_wire(tmp_path):
    """The real SDK against the aiplatform REST fake: each step PATCHes the endpoint's traffic split."""
    from settings import load_config
    from tests.vertex_fake import vertex_over_the_wire

    dev = load_config("dev", environ={})
    name = dev.names.endpoint_name
    with vertex_over_the_wire(dev.project_id, dev.region) as fake:
        fake.seed_endpoint(name, {"111": "fmnist-v1", "222": "fmnist-v2"}, {"111": 95, "222": 5})
        split = ramp.VertexSplit(aiplatform.Endpoint(name), "v1", "v2")
        split.set_share(25.0)
        assert fake.resources[name]["trafficSplit"] == {"222": 25, "111": 75}
        split.finish(promoted=False)
    assert fake.resources[name]["trafficSplit"] == {"111": 100}
    assert [d["id"] for d in fake.resources[name]["deployedModels"]] == ["111"]
    patched = fake.sent("PATCH", name)
    assert len(patched) == 1 and patched[0].query.get("updateMask") == "trafficSplit"


def test_the_local_command_names_the_prometheus_server_it_needs(monkeypatch, tmp_path, capsys):
    from trainer import cli

    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path))
    assert cli.main(["ramp"]) == 1
    assert "pass --prometheus-url" in capsys.readouterr().err


def test_the_cloud_run_share_over_http_reads_then_patches_with_the_etag():
    """CloudRunShare with a real requests session against a local stand-in of the Admin API's service resource:
    one GET, one PATCH of the same resource carrying its etag with CANARY_PERCENT changed; a refused PATCH (the
    service changed meanwhile: 409) is an error that names it."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    seen, resource, refuse = [], _cloud_run_service(), []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            seen.append(("GET", self.path, None))
            self._answer(200, resource)

        def do_PATCH(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(("PATCH", self.path, body))
            self._answer(409 if refuse else 200, {"error": "etag mismatch"} if refuse else {"name": "operations/1"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        share = ramp.CloudRunShare(resource["name"], requests.Session())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RUN_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
            share.set_share(50.0)
            refuse.append(True)
            with pytest.raises(CommandError, match="PATCH .* answered 409"):
                share.set_share(25.0)
    finally:
        server.shutdown()
        server.server_close()
    assert [(method, path) for method, path, _ in seen] == [
        ("GET", f"/v2/{resource['name']}"),
        ("PATCH", f"/v2/{resource['name']}"),
    ] * 2
    body = seen[1][2]
    assert body["etag"] == resource["etag"]
    assert {e["name"]: e["value"] for e in body["template"]["containers"][0]["env"]}["CANARY_PERCENT"] == "50"


def test_a_share_a_deploy_moved_is_put_back_and_logged_without_restarting_the_step(tmp_path):
    registry, _, challenger = _registry(tmp_path)
    shares, clock, seen = Shares(), Clock(), []
    assert _tick(registry, _evidence(10), shares, clock, seen).action == "start"
    clock.now += timedelta(minutes=7)
    shares.moved_by_others = True  # a deploy set CANARY_PERCENT back to the config's value
    assert _tick(registry, _evidence(10), shares, clock, seen).action == "wait"
    assert shares.moves == [5.0, ("restored", 5.0)]
    assert seen == [pytest.approx(420, abs=30)]  # the step's window still starts at the step, not at the repair
    [restore] = [e for e in registry.read_index().events if e["action"] == "ramp-restore"]
    assert (restore["version"], restore["percent"], restore["actuators"], restore["trigger"]) == (
        challenger,
        5.0,
        ["recorded"],
        "user:test",
    )
    clock.now += timedelta(minutes=1)
    assert _tick(registry, _evidence(10), shares, clock, seen).action == "wait"
    assert shares.moves == [5.0, ("restored", 5.0)] and seen[-1] == pytest.approx(480, abs=30)  # nothing to do
    assert ramp.ramp_state(registry.read_index(), challenger).action == "ramp-step"


def test_the_cloud_run_share_is_put_back_only_where_a_deploy_moved_it(monkeypatch):
    resource, sent = _cloud_run_service(), []

    class Session:
        def get(self, url, **kwargs):
            sent.append("GET")
            return SimpleNamespace(status_code=200, json=lambda: json.loads(json.dumps(resource)))

        def patch(self, url, **kwargs):
            sent.append("PATCH")
            resource["template"] = kwargs["json"]["template"]
            return SimpleNamespace(status_code=200, text="")

    share = ramp.CloudRunShare(resource["name"], Session())
    assert share.hold_share(5.0) is False and sent == ["GET"]  # the service has 5: no new revision
    resource["template"]["containers"][0]["env"][2]["value"] = "10"  # `cdktf deploy` wrote the config's share
    assert share.hold_share(5.0) is True and sent == ["GET", "GET", "PATCH"]
    assert ramp.cloud_run_share(resource) == "5"
    assert ramp.cloud_run_share({"template": {"containers": [{"env": []}]}}) is None


def test_the_vertex_split_is_put_back_only_where_it_moved(tmp_path):
    from settings import load_config
    from tests.vertex_fake import vertex_over_the_wire

    dev = load_config("dev", environ={})
    name = dev.names.endpoint_name
    with vertex_over_the_wire(dev.project_id, dev.region) as fake:
        fake.seed_endpoint(name, {"111": "fmnist-v1", "222": "fmnist-v2"}, {"111": 75, "222": 25})
        split = ramp.VertexSplit(aiplatform.Endpoint(name), "v1", "v2")
        assert split.hold_share(25.0) is False and fake.sent("PATCH", name) == []
        assert split.hold_share(50.0) is True
        assert fake.resources[name]["trafficSplit"] == {"222": 50, "111": 50}
        assert ramp.VertexSplit(aiplatform.Endpoint(name), "v1", "v9").hold_share(5.0) is False
    assert ramp.CommandShare(["true"]).hold_share(5.0) is False
