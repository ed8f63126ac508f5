"""`trainer ramp` exactly: the reasons each step verdict writes into the event log, every event's fields, the
sentences of its refusals, the windows it asks PromQL for, the lines it prints and its exit codes, and the requests
its actuators make. Found unpinned by `make mutate`; an operator reads these in the log when a ramp stops."""

import json
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from contracts.registry_index import RegistryIndex
from contracts.rollout import Agreement, ClientTally, Evidence
from tests.trainer.test_ramp import STEPS, THRESHOLDS, Clock, Shares, _cloud_run_service, _evidence, _registry
from trainer.cloud import ramp
from trainer.cloud.rollout import Deployed
from trainer.errors import CommandError

ERRORS_0_OF_0 = (
    "challenger error rate 0.00% over 0.0 credited requests (boundary 1.00%): log evidence above 0.00, below 0.00, "
    "threshold 3.00 (alpha 0.05)"
)


def test_the_reasons_of_a_wait_name_every_missing_figure():
    verdict = ramp.judge_step(_evidence(0, clients=0), THRESHOLDS, 0.05, 4)
    assert verdict.reasons == [
        "0 of the 5 distinct clients",
        "0.0 of the 300 paired requests",
        ERRORS_0_OF_0,
        "no request scored by both models in this step yet",
    ]
    verdict = ramp.judge_step(_evidence(100), THRESHOLDS, 0.05, 4)
    assert verdict.reasons[1:] == [
        "challenger error rate 0.00% over 100.0 credited requests (boundary 1.00%): log evidence above -1.17, "
        "below 0.92, threshold 3.00 (alpha 0.05)",
        "disagreement with the champion 0.00% over 100.0 credited requests (boundary 2.00%): log evidence above "
        "-1.17, below 1.86, threshold 3.00 (alpha 0.05)",
    ]


def test_a_rollback_names_each_harm_at_the_split_level():
    verdict = ramp.judge_step(_evidence(100, errors=10, agreed=80), THRESHOLDS, 0.05, 4)
    assert (verdict.decision, verdict.codes) == ("rollback", ["error_rate_high", "agreement_low"])
    assert verdict.reasons == [
        "challenger error rate 10.00% over 100.0 credited requests (boundary 1.00%): log evidence above 12.34, "
        "below -8.78, threshold 5.08 (alpha 0.00625)",
        "disagreement with the champion 20.00% over 100.0 credited requests (boundary 2.00%): log evidence above "
        "27.02, below -15.35, threshold 5.08 (alpha 0.00625)",
    ]
    latency = ramp.judge_step(_evidence(400, latency=2.0), THRESHOLDS, 0.05, 4)
    assert latency.reasons == ["challenger inference time 2.00x the champion's on the same images"]


def test_the_latency_guard_is_strictly_over_the_ratio_and_waits_for_the_pairs():
    at = ramp.judge_step(_evidence(400, latency=1.5), THRESHOLDS, 0.05, 4)
    assert at.decision == "advance"
    exactly = Evidence(10, 300.0, 0.0, Agreement(300, 300), 2.0)  # exactly min_requests pairs: the guard acts
    assert ramp.judge_step(exactly, THRESHOLDS, 0.05, 4).codes == ["latency_high"]
    clients = Evidence(5, 400.0, 0.0, Agreement(400, 400), 2.0)  # exactly min_clients: the guard acts
    assert ramp.judge_step(clients, THRESHOLDS, 0.05, 4).codes == ["latency_high"]
    unmeasured = Evidence(10, 400.0, 0.0, Agreement(400, 400), None)
    assert ramp.judge_step(unmeasured, THRESHOLDS, 0.05, 4).decision == "advance"


def test_an_advance_states_the_clients_and_both_tests():
    verdict = ramp.judge_step(_evidence(400), THRESHOLDS, 0.05, 4)
    assert verdict.reasons == [
        "10 clients; error rate 0.00% over 400.0 credited requests (boundary 1.00%): log evidence above -1.97, "
        "below 3.75, threshold 3.00 (alpha 0.05); disagreement 0.00% over 400.0 credited requests (boundary "
        "2.00%): log evidence above -1.97, below 7.68, threshold 3.00 (alpha 0.05)"
    ]


def test_more_agreed_than_compared_counts_as_no_disagreement():
    over = Evidence(10, 400.0, 0.0, Agreement(401, 400), 1.0)
    assert (
        ramp.judge_step(over, THRESHOLDS, 0.05, 4).reasons
        == ramp.judge_step(_evidence(400), THRESHOLDS, 0.05, 4).reasons
    )


# ---- the state in the event log -------------------------------------------------------------------------------


def test_the_newest_ramp_event_of_the_challenger_is_its_state():
    events = [
        {"action": "ramp-step", "version": "v2", "percent": 5.0, "at": "2026-01-01T00:00:00Z"},
        {"action": "ramp-step", "version": "v2", "percent": 25.0, "at": "2026-01-01T00:10:00Z"},
        {"action": "ramp-step", "version": "v3", "percent": 5.0, "at": "2026-01-01T00:20:00Z"},
        {"action": "promote", "version": "v2", "at": "2026-01-01T00:30:00Z"},
    ]
    index = RegistryIndex(events=events)
    assert ramp.ramp_state(index, "v2") == ramp.RampState("ramp-step", 25.0, "2026-01-01T00:10:00Z")
    assert ramp.ramp_state(index, "v4") is None
    bare = RegistryIndex(events=[{"action": "ramp-rollback", "version": "v2", "at": "t"}])
    assert ramp.ramp_state(bare, "v2") == ramp.RampState("ramp-rollback", 0.0, "t")
    assert [ramp.RampState(a, 0.0, "t").finished for a in ramp.RAMP_ACTIONS] == [False, True, True]


def test_seconds_since_reads_utc_and_never_goes_negative():
    state = ramp.RampState("ramp-step", 5.0, "2026-01-01T00:00:00Z")
    assert state.seconds_since(datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)) == 90.0
    assert state.seconds_since(datetime(2025, 12, 31, 23, 59, tzinfo=UTC)) == 0.0


def test_the_next_step_and_the_end():
    assert ramp.next_percent(STEPS, 0.0) == 5.0
    assert ramp.next_percent(STEPS, 5.0) == 25.0
    assert ramp.next_percent(STEPS, 30.0) == 50.0
    assert ramp.next_percent(STEPS, 100.0) is None


def test_the_steps_refusal_says_what_is_expected_and_where_to_set_it():
    assert ramp.validate_steps((5, 100)) == [5, 100]
    with pytest.raises(CommandError) as raised:
        ramp.validate_steps([5, 25])
    assert str(raised.value) == (
        "ramp steps [5, 25]: expected increasing shares above 0 that end at 100, e.g. 5 25 50 100 "
        "(config rollout.ramp_steps or --steps)"
    )
    with pytest.raises(CommandError):
        ramp.validate_steps([-5, 100])


def test_the_trigger_without_a_job_name_and_without_an_execution(monkeypatch):
    import getpass

    assert ramp.trigger({"CLOUD_RUN_EXECUTION": "x-1"}) == "cloud-run-job:?/x-1"
    monkeypatch.setattr(getpass, "getuser", lambda: "ada")
    assert ramp.trigger({"CLOUD_RUN_JOB": "j", "CLOUD_RUN_EXECUTION": ""}) == "user:ada"
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", "e-2")
    monkeypatch.setenv("CLOUD_RUN_JOB", "fmnist-ramp")
    assert ramp.trigger() == "cloud-run-job:fmnist-ramp/e-2"  # the process environment by default


# ---- a tick, event by event ---------------------------------------------------------------------------------


def _run_tick(registry, evidence, shares, clock, seen, **kwargs):
    def read(champion, challenger, seconds):
        seen.append((champion, challenger, seconds))
        return evidence

    return ramp.tick(
        registry, "candidate", read, [shares], THRESHOLDS, steps=STEPS, alpha=0.05, who="user:t", now=clock, **kwargs
    )


def test_the_start_event_and_what_the_step_reads(tmp_path):
    registry, champion, challenger = _registry(tmp_path)
    shares, clock, seen = Shares(), Clock(), []
    start = _run_tick(registry, _evidence(400), shares, clock, seen)
    assert (start.action, start.percent, start.detail, start.champion) == (
        "start",
        5.0,
        "ramp started at 5.0 %",
        champion,
    )
    event = registry.read_index().events[-1]
    assert {k: v for k, v in event.items() if k != "at"} == {
        "action": "ramp-step",
        "version": challenger,
        "percent": 5.0,
        "previous": 0.0,
        "champion": champion,
        "trigger": "user:t",
        "actuators": ["recorded"],
    }
    clock.now = datetime.fromisoformat(event["at"].replace("Z", "+00:00")) + timedelta(seconds=30)
    step = _run_tick(registry, _evidence(400), shares, clock, seen)
    assert seen == [(champion, challenger, 30.0)]
    event = registry.read_index().events[-1]
    assert {k: v for k, v in event.items() if k != "at"} == {
        "action": "ramp-step",
        "version": challenger,
        "percent": 25.0,
        "previous": 5.0,
        "champion": champion,
        "trigger": "user:t",
        "codes": ["passed"],
        "reasons": step.verdict.reasons,
        "evidence": {
            "clients": 10,
            "requests": 400,
            "errors": 0.0,
            "agreement": {"agreed": 400, "compared": 400},
            "latency_ratio": 1.0,
        },
    }


def test_a_rollback_event_and_a_refused_promotion_event(tmp_path):
    registry, champion, challenger = _registry(tmp_path)
    shares, clock, seen = Shares(), Clock(), []
    _run_tick(registry, _evidence(400), shares, clock, seen)
    result = _run_tick(registry, _evidence(100, errors=10), shares, clock, seen)
    assert (result.action, result.percent) == ("rollback", 0.0)
    event = registry.read_index().events[-1]
    assert (event["action"], event["percent"], event["previous"], event["champion"]) == (
        "ramp-rollback",
        0.0,
        5.0,
        champion,
    )
    done = _run_tick(registry, _evidence(400), shares, clock, seen)
    assert (done.action, done.percent, done.detail) == ("done", 0.0, f"the ramp of {challenger} ended: ramp-rollback")
    assert (done.challenger, done.champion) == (challenger, champion)  # what the printed line names

    registry, champion, challenger = _registry(tmp_path / "gate", challenger_accuracy=0.80)
    for _ in range(4):
        _run_tick(registry, _evidence(400), shares, clock, seen)
    refused = _run_tick(registry, _evidence(400), shares, clock, seen)
    assert (refused.action, refused.percent) == ("refused", 0.0) and "refused" in refused.detail
    event = registry.read_index().events[-1]
    assert (event["action"], event["percent"], event["previous"], event["gate"]) == (
        "ramp-rollback",
        0.0,
        100.0,
        refused.detail,
    )
    # the challenger's own event, with the verdict that reached the gate: the next tick reads the ramp as ended
    assert (event["version"], event["champion"], event["trigger"], event["codes"]) == (
        challenger,
        champion,
        "user:t",
        ["passed"],
    )


def test_a_dry_run_says_what_it_would_do_and_records_nothing(tmp_path):
    registry, champion, challenger = _registry(tmp_path)
    shares, clock, seen = Shares(), Clock(), []
    _run_tick(registry, _evidence(400), shares, clock, seen)
    events = len(registry.read_index().events)
    assert _run_tick(registry, _evidence(400), shares, clock, seen, dry_run=True).action == "would-advance"
    bad = _run_tick(registry, _evidence(100, errors=10), shares, clock, seen, dry_run=True)
    assert (bad.action, bad.percent) == ("would-rollback", 5.0)
    waiting = _run_tick(registry, _evidence(10), shares, clock, seen, dry_run=True)
    assert (waiting.action, waiting.challenger, waiting.champion) == ("wait", challenger, champion)
    assert waiting.evidence == _evidence(10)  # printed with the verdict: why it waits
    assert shares.moves == [5.0] and len(registry.read_index().events) == events


def test_a_challenger_that_is_the_champion_or_no_champion(tmp_path):
    from trainer.models.registry import ModelRegistry

    registry, champion, _ = _registry(tmp_path)
    shares, clock = Shares(), Clock()
    result = ramp.tick(
        registry, "champion", lambda *a: None, [shares], THRESHOLDS, steps=STEPS, alpha=0.05, who="u", now=clock
    )
    assert (result.action, result.percent, result.detail) == ("done", 0.0, f"{champion} is the champion")
    assert (result.challenger, result.champion) == (champion, champion)
    empty = ModelRegistry(str(tmp_path / "empty"))
    version = empty.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="d")
    with pytest.raises(CommandError) as raised:
        ramp.tick(empty, version, lambda *a: None, [shares], THRESHOLDS, steps=STEPS, alpha=0.05, who="u")
    assert str(raised.value) == ("the registry has no champion: a ramp moves traffic from a champion to a challenger")
    assert shares.moves == []


def test_the_summary_line():
    evidence = Evidence(3, 10.0, 1.0, None, None)
    verdict = ramp.StepVerdict("wait", ["too_few_clients"], ["3 of 5"])
    tick = ramp.Tick("v2", "v1", "wait", 5.0, verdict, evidence, "d")
    assert ramp._summary(tick) == {
        "challenger": "v2",
        "champion": "v1",
        "action": "wait",
        "percent": 5.0,
        "verdict": {"decision": "wait", "codes": ["too_few_clients"], "reasons": ["3 of 5"]},
        "evidence": {"clients": 3, "requests": 10.0, "errors": 1.0, "agreement": None, "latency_ratio": None},
        "detail": "d",
    }
    assert ramp._summary(ramp.Tick("v2", None, "start", 5.0)) == {
        "challenger": "v2",
        "champion": None,
        "action": "start",
        "percent": 5.0,
    }


# ---- PromQL windows ---------------------------------------------------------------------------------------------


def test_the_evidence_window_is_the_time_since_the_step_at_least_a_minute(monkeypatch):
    from trainer.cloud import promql

    asked = []

    def fleet_tallies(ask, champion, challenger, window):
        asked.append((ask, champion, challenger, window))
        return [ClientTally(requests=80.0, compared=80.0, agreed=80.0), ClientTally(requests=10.0)]

    monkeypatch.setattr(promql, "fleet_tallies", fleet_tallies)
    read = ramp.promql_evidence("ask", THRESHOLDS)
    evidence = read("v1", "v2", 90.4)
    assert read("v1", "v2", 0.0) and read("v1", "v2", 59.0) and read("v1", "v2", 59.5)
    assert [a[3] for a in asked] == ["91s", "60s", "60s", "60s"] and asked[0][:3] == ("ask", "v1", "v2")
    assert (evidence.clients, evidence.requests) == (2, 60.0)  # the first client capped at 50 requests
    ramp.promql_evidence("ask", THRESHOLDS, windowed=False)("v1", "v2", 90.4)
    ramp.promql_evidence("ask", THRESHOLDS, min_window_s=120)("v1", "v2", 90.4)
    assert [a[3] for a in asked[4:]] == [None, "120s"]


# ---- the command -------------------------------------------------------------------------------------------------


@pytest.fixture
def local_ramp(tmp_path, monkeypatch):
    """`trainer ramp` on the local target, PromQL answering from `state.tallies` and the share command recorded."""
    from trainer.cloud import promql
    from trainer.models.registry import ModelRegistry

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path))
    monkeypatch.delenv("CLOUD_RUN_EXECUTION", raising=False)
    state = SimpleNamespace(asked=[], tallies=[], read=[])
    monkeypatch.setattr(promql, "http_asker", lambda url: state.asked.append(url) or "asker")
    monkeypatch.setattr(
        promql,
        "fleet_tallies",
        lambda ask, a, b, window: state.asked.append(window) or state.read.append(ask) or state.tallies,
    )
    from settings import load_config

    state.registry = ModelRegistry.from_settings(load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path)}))
    champion = state.registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="d")
    state.registry.promote(champion)
    state.champion = champion
    state.challenger = state.registry.register(
        {"metadata.json": b"{}"}, {"accuracy": 0.91}, "custom", dataset_version="d"
    )
    state.log = tmp_path / "shares.txt"
    state.share_command = f"{sys.executable} -c \"import sys; open(r'{state.log}', 'a').write(sys.argv[1] + ' ')\""
    return state


def test_the_command_prints_one_line_per_tick_and_runs_the_share_command(local_ramp, capsys):
    from trainer import cli

    argv = ["ramp", "--prometheus-url", "http://prom:9090", "--share-command", local_ramp.share_command]
    assert cli.main([*argv, "--steps", "10", "100"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "challenger": local_ramp.challenger,
        "champion": local_ramp.champion,
        "action": "start",
        "percent": 10.0,
        "detail": "ramp started at 10.0 %",
    }
    assert local_ramp.log.read_text() == "10 "
    assert local_ramp.asked == ["http://prom:9090"]
    assert cli.main([*argv, "--steps", "10", "100", "--since-start"]) == 0  # no evidence: wait
    printed = json.loads(capsys.readouterr().out)
    assert (printed["action"], printed["verdict"]["decision"]) == ("wait", "wait")
    assert local_ramp.asked[-1] is None  # since the start: the live counters, no window
    assert local_ramp.log.read_text() == "10 "


def test_the_watch_ticks_until_the_end_and_a_refusal_exits_3(local_ramp, capsys):
    from trainer import cli

    local_ramp.tallies = [ClientTally(requests=40.0, compared=40.0, agreed=40.0)] * 15  # 600 clean, 15 clients
    argv = ["ramp", "--prometheus-url", "http://p", "--share-command", local_ramp.share_command]
    assert cli.main([*argv, "--steps", "50", "100", "--watch", "--interval", "0.01"]) == 0
    actions = [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()]
    assert actions == ["start", "step", "promote"]
    assert local_ramp.log.read_text() == "50 100 0 "  # the end sets the share back to 0: the slot follows the alias
    assert local_ramp.registry.read_index().alias("champion") == local_ramp.challenger
    worse = local_ramp.registry.register({"metadata.json": b"{}"}, {"accuracy": 0.5}, "custom", dataset_version="d")
    assert cli.main([*argv, "--challenger", worse, "--steps", "100", "--watch", "--interval", "0.01"]) == 3
    assert [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()] == ["start", "refused"]


def test_without_watch_one_tick_is_all(local_ramp, capsys):
    from trainer import cli

    local_ramp.tallies = [ClientTally(requests=40.0, compared=40.0, agreed=40.0)] * 15
    assert cli.main(["ramp", "--prometheus-url", "http://p", "--steps", "50", "100"]) == 0
    assert cli.main(["ramp", "--prometheus-url", "http://p", "--steps", "50", "100", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["start", "would-advance"]
    assert local_ramp.read == ["asker"] and local_ramp.asked[-1] == "60s"  # windowed by default: at least a minute
    assert registry_trigger(local_ramp.registry).startswith("user:")


def registry_trigger(registry):
    return next(e for e in reversed(registry.read_index().events) if e["action"] == "ramp-step")["trigger"]


# ---- the actuators -----------------------------------------------------------------------------------------------


def test_the_canary_percent_is_written_as_people_write_it():
    body = ramp.cloud_run_share_body(_cloud_run_service(), 12.5)
    assert body["template"]["containers"][0]["env"][-1] == {"name": "CANARY_PERCENT", "value": "12.5"}
    body = ramp.cloud_run_share_body(_cloud_run_service(), 0.0)
    assert body["template"]["containers"][0]["env"][-1] == {"name": "CANARY_PERCENT", "value": "0"}


def test_the_cloud_run_refusals_exactly():
    with pytest.raises(CommandError) as raised:
        ramp.cloud_run_share_body(_cloud_run_service("shadow"), 25.0)
    assert str(raised.value) == "projects/p/locations/r/services/fmnist: ROLLOUT_MODE is 'shadow', a ramp needs canary"
    no_mode = _cloud_run_service()
    no_mode["template"]["containers"][0]["env"] = [{"name": "CHALLENGER", "value": "candidate"}]
    with pytest.raises(CommandError, match="ROLLOUT_MODE is None, a ramp needs canary"):
        ramp.cloud_run_share_body(no_mode, 25.0)
    two = _cloud_run_service()
    two["template"]["containers"][1]["env"] = [{"name": "CHALLENGER", "value": "x"}]
    with pytest.raises(CommandError) as raised:
        ramp.cloud_run_share_body(two, 25.0)
    assert str(raised.value) == (
        "projects/p/locations/r/services/fmnist: expected one container with CHALLENGER set (the in-service "
        "rollout), found 2: set service.challenger and service.rollout_mode=canary in the config and deploy"
    )


class _Session:
    def __init__(self, get_status=200, patch_status=200):
        self.calls, self.get_status, self.patch_status = [], get_status, patch_status

    def get(self, url, **kwargs):
        self.calls.append(("GET", url, kwargs))
        return SimpleNamespace(status_code=self.get_status, text="g" * 400, json=_cloud_run_service)

    def patch(self, url, **kwargs):
        self.calls.append(("PATCH", url, {k: v for k, v in kwargs.items() if k != "json"}))
        self.sent = kwargs["json"]
        return SimpleNamespace(status_code=self.patch_status, text="p" * 400)


def test_the_cloud_run_share_waits_a_minute_at_most_and_names_a_failed_read():
    session = _Session()
    ramp.CloudRunShare("projects/p/locations/r/services/s", session).finish(promoted=True)
    url = "https://run.googleapis.com/v2/projects/p/locations/r/services/s"
    assert session.calls == [("GET", url, {"timeout": 60}), ("PATCH", url, {"timeout": 60})]
    assert session.sent["template"]["containers"][0]["env"][-1] == {"name": "CANARY_PERCENT", "value": "0"}
    with pytest.raises(CommandError) as raised:
        ramp.CloudRunShare("projects/p/locations/r/services/s", _Session(get_status=403)).set_share(5.0)
    assert str(raised.value) == f"GET {url} answered 403: {'g' * 300}"
    with pytest.raises(CommandError) as raised:
        ramp.CloudRunShare("projects/p/locations/r/services/s", _Session(patch_status=409)).set_share(5.0)
    assert str(raised.value) == f"PATCH {url} answered 409: {'p' * 300}"
    assert ramp.CloudRunShare("s", session).name == "cloud-run"


def test_the_vertex_split_rounds_to_whole_percents_and_ends_either_way():
    deployed = [Deployed("111", "v1", 95), Deployed("222", "v2", 5)]
    assert ramp.vertex_split_calls(deployed, "v1", "v2", 33.4) == [
        ("update", {"traffic_split": {"222": 33, "111": 67}})
    ]
    assert ramp.vertex_split_calls(deployed, "v1", "v2", None) == [
        ("undeploy", {"deployed_model_id": "222", "traffic_split": {"111": 100}, "sync": True})
    ]
    assert ramp.vertex_split_calls(deployed, "v1", "v2", None, promoted=True) == [
        ("update", {"traffic_split": {"222": 100}}),
        ("undeploy", {"deployed_model_id": "111", "sync": True}),
    ]
    assert ramp.vertex_split_calls(deployed, "v0", "v2", 5.0) == []


def test_the_vertex_actuator_calls_its_endpoint():
    calls = []
    endpoint = SimpleNamespace(
        traffic_split={"111": 95, "222": 5},
        list_models=lambda: [
            SimpleNamespace(id="111", display_name="fmnist-v1"),
            SimpleNamespace(id="222", display_name="fmnist-v2"),
        ],
        update=lambda **kw: calls.append(("update", kw)),
        undeploy=lambda **kw: calls.append(("undeploy", kw)),
    )
    split = ramp.VertexSplit(endpoint, "v1", "v2")
    split.set_share(50.0)
    split.finish(promoted=True)
    assert calls == [
        ("update", {"traffic_split": {"222": 50, "111": 50}}),
        ("update", {"traffic_split": {"222": 100}}),
        ("undeploy", {"deployed_model_id": "111", "sync": True}),
    ]
    assert split.name == "vertex"


def test_the_share_command_gets_the_share_last_and_a_failure_stops_the_tick(tmp_path):
    import subprocess

    log = tmp_path / "log"
    script = f"import sys; open(r'{log}', 'a').write(' '.join(sys.argv[1:]) + ';')"
    share = ramp.CommandShare([sys.executable, "-c", script, "--fleet"])
    share.set_share(25.0)
    share.finish(promoted=False)
    assert log.read_text() == "--fleet 25;--fleet 0;" and share.name == "command"
    with pytest.raises(subprocess.CalledProcessError):
        ramp.CommandShare([sys.executable, "-c", "raise SystemExit(1)"]).set_share(5.0)


def test_the_cloud_actuators_name_the_service_and_the_endpoint(tmp_path, monkeypatch):
    import google.auth
    from google.auth.transport import requests as auth_requests
    from google.cloud import aiplatform

    from settings import load_config

    settings = load_config("dev", environ={})
    registry, champion, challenger = _registry(tmp_path)
    seen = []
    monkeypatch.setattr(google.auth, "default", lambda scopes: seen.append(scopes) or ("creds", "project"))
    monkeypatch.setattr(auth_requests, "AuthorizedSession", lambda credentials: ("session", credentials))
    monkeypatch.setattr(aiplatform, "init", lambda **kwargs: seen.append(kwargs))
    monkeypatch.setattr(aiplatform, "Endpoint", lambda name: ("endpoint", name))
    cloud_run, vertex = ramp._cloud_actuators(settings, registry, "candidate")
    assert cloud_run == ramp.CloudRunShare(
        f"projects/{settings.project_id}/locations/{settings.region}/services/{settings.names.cloud_run_service}",
        ("session", "creds"),
    )
    assert vertex == ramp.VertexSplit(("endpoint", settings.names.endpoint_name), champion, challenger)
    assert seen == [
        ["https://www.googleapis.com/auth/cloud-platform"],
        {"project": settings.project_id, "location": settings.region},
    ]
    from trainer.models.registry import ModelRegistry

    no_champion = ModelRegistry(str(tmp_path / "none"))
    assert len(ramp._cloud_actuators(settings, no_champion, "candidate")) == 1  # Cloud Run alone


@pytest.mark.parametrize(
    "service",
    [
        {"name": "s"},
        {"name": "s", "template": {}},
        {"name": "s", "template": {"containers": [{"name": "collector"}]}},
    ],
)
def test_a_service_document_without_containers_or_env_is_refused_by_name(service):
    with pytest.raises(CommandError, match=r"^s: expected one container with CHALLENGER set .* found 0: "):
        ramp.cloud_run_share_body(service, 5.0)
    # between steps too: such a service has no share to read, and putting one back is refused by name, not a crash
    assert ramp.cloud_run_share(service) is None
    read = SimpleNamespace(status_code=200, json=lambda: json.loads(json.dumps(service)))
    never = SimpleNamespace(status_code=500, text="a PATCH was sent")
    share = ramp.CloudRunShare("s", SimpleNamespace(get=lambda url, **kwargs: read, patch=lambda *a, **k: never))
    with pytest.raises(CommandError, match=r"^s: expected one container with CHALLENGER set .* found 0: "):
        share.hold_share(5.0)


def test_a_sidecar_without_env_does_not_hide_the_serving_container():
    service = _cloud_run_service()
    del service["template"]["containers"][1]["env"]
    body = ramp.cloud_run_share_body(service, 50.0)
    assert body["template"]["containers"][0]["env"][-1] == {"name": "CANARY_PERCENT", "value": "50"}


def test_the_local_refusal_without_prometheus_exactly(monkeypatch, tmp_path, capsys):
    from trainer import cli

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path))
    assert cli.main(["ramp"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: local target: pass --prometheus-url (the Prometheus server scraping the fleet)"
    )


def test_the_gcp_ramp_asks_cloud_monitoring_and_moves_the_cloud_actuators(gcs_settings, monkeypatch, capsys):
    from trainer import cli
    from trainer.cloud import promql
    from trainer.models.registry import ModelRegistry, register_external_version

    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.delenv("CLOUD_RUN_EXECUTION", raising=False)
    registry = ModelRegistry.from_settings(gcs_settings)
    champion, challenger = (
        register_external_version(gcs_settings, source="custom", metrics={"accuracy": a}, dataset_version="d")
        for a in (0.90, 0.95)
    )
    registry.promote(champion)
    asked, built, shares = [], [], Shares()
    monkeypatch.setattr(promql, "google_asker", lambda project: asked.append(project) or "google")

    def cloud_actuators(settings, registry_, ref):
        built.append((settings.project_id, registry_.index_uri, ref))
        return [shares]

    monkeypatch.setattr(ramp, "_cloud_actuators", cloud_actuators)
    assert cli.main(["--env", "dev", "ramp", "--steps", "10", "100"]) == 0
    assert asked == [gcs_settings.project_id]
    assert built == [(gcs_settings.project_id, registry.index_uri, "candidate")]
    assert shares.moves == [10.0]
    printed = json.loads(capsys.readouterr().out)
    assert (printed["action"], printed["challenger"], printed["champion"]) == ("start", challenger, champion)


def test_the_watch_stops_at_a_rollback(local_ramp, capsys):
    from trainer import cli

    local_ramp.tallies = [ClientTally(requests=40.0, errors=20.0, compared=40.0, agreed=40.0)] * 15
    argv = ["ramp", "--prometheus-url", "http://p", "--steps", "50", "100", "--watch", "--interval", "0.01"]
    assert cli.main(argv) == 0
    assert [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()] == ["start", "rollback"]


def test_the_watch_of_a_ramp_that_already_ended_is_one_tick(local_ramp, capsys, monkeypatch):
    """A scheduled watch started after the end (the challenger is the champion now) prints `done` once and exits."""
    from trainer import cli

    def watched_on(seconds):
        raise AssertionError("the watch slept for another tick after `done`")

    monkeypatch.setattr(ramp.time, "sleep", watched_on)
    local_ramp.registry.promote(local_ramp.challenger)
    argv = ["ramp", "--prometheus-url", "http://p", "--steps", "50", "100", "--watch", "--interval", "0.01"]
    assert cli.main(argv) == 0
    assert [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()] == ["done"]


def test_the_vertex_split_is_put_back_when_only_the_champions_share_moved(tmp_path):
    """A third model on the endpoint took part of the champion's share: the challenger's own share is right, the
    split is not, so the tick puts back challenger/champion = 25/75."""
    from google.cloud import aiplatform

    from settings import load_config
    from tests.vertex_fake import vertex_over_the_wire

    dev = load_config("dev", environ={})
    name = dev.names.endpoint_name
    with vertex_over_the_wire(dev.project_id, dev.region) as fake:
        models = {"111": "fmnist-v1", "222": "fmnist-v2", "333": "fmnist-v3"}
        fake.seed_endpoint(name, models, {"111": 70, "222": 25, "333": 5})
        assert ramp.VertexSplit(aiplatform.Endpoint(name), "v1", "v2").hold_share(25.0) is True
        assert fake.resources[name]["trafficSplit"] == {"222": 25, "111": 75}


def test_a_step_advances_only_when_both_rates_are_shown_below_at_the_configured_alpha():
    """rollout.ramp_alpha 0.01, not the test's default 0.05: evidence that passes at 0.05 still waits."""
    from tests.trainer.test_ramp import THRESHOLDS

    few = _evidence(330)  # no error in 330 requests: shown below 1 % at 0.05, not yet at 0.01
    assert ramp.judge_step(few, THRESHOLDS, 0.05, 4).codes == ["passed"]
    assert ramp.judge_step(few, THRESHOLDS, 0.01, 4).codes == ["error_rate_uncertain"]
    close = _evidence(1000, agreed=993)  # 0.7 % disagreement: below 2 % at 0.05, not yet at 0.01
    assert ramp.judge_step(close, THRESHOLDS, 0.05, 4).codes == ["passed"]
    assert ramp.judge_step(close, THRESHOLDS, 0.01, 4).codes == ["agreement_uncertain"]


def test_the_steps_may_start_below_1_percent():
    assert ramp.validate_steps([0.5, 100]) == [0.5, 100] and ramp.validate_steps([1, 100]) == [1, 100]
    with pytest.raises(CommandError, match=r"^ramp steps \[0, 100\]: expected increasing shares above 0"):
        ramp.validate_steps([0, 100])
