"""The fleet's PromQL, in-process (found by `make mutate`'s promql group): each query's exact text, the asker over
HTTP against a small Prometheus-shaped server on a free loopback port (the query, the header, each refusal), and
the answers turned into tallies, accuracy and a verdict by client bucket."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from contracts.monitoring_queries import (
    GATE_REFUSED,
    PIPELINE_STEP_FAILED,
    event_log_filter,
    feedback_queries,
    rollout_queries,
)
from contracts.rollout import Accuracy, ClientTally, Thresholds
from trainer.cloud import promql
from trainer.errors import CommandError


def test_each_rollout_figure_is_summed_by_client_over_the_pair_or_the_challenger():
    assert rollout_queries("v1", "v2") == {
        "requests": 'sum by (client) ((fmnist_rollout_requests_total{model_version="v2",role="challenger"}))',
        "errors": 'sum by (client) ((fmnist_rollout_errors_total{model_version="v2",role="challenger"}))',
        "compared": 'sum by (client) ((fmnist_rollout_paired_requests_total{champion_version="v1",'
        'challenger_version="v2"}))',
        "agreed": 'sum by (client) ((fmnist_rollout_paired_agreement_total{champion_version="v1",'
        'challenger_version="v2"}))',
        "challenger_seconds": 'sum by (client) ((fmnist_rollout_paired_inference_seconds_total{champion_version="v1",'
        'challenger_version="v2",role="challenger"}))',
        "champion_seconds": 'sum by (client) ((fmnist_rollout_paired_inference_seconds_total{champion_version="v1",'
        'challenger_version="v2",role="champion"}))',
    }
    assert rollout_queries("v1", "v2", "30m")["requests"] == (
        'sum by (client) (increase(fmnist_rollout_requests_total{model_version="v2",role="challenger"}[30m]))'
    )
    assert feedback_queries("v2", "2d")["labelled"] == (
        'sum by (poster) (increase(fmnist_feedback_poster_labelled_total{model_version="v2"}[2d]))'
    )


@pytest.mark.parametrize(
    "champion, challenger, window, message",
    [
        ("", "v2", None, "model version '': expected letters, digits and _.-:/@ only"),
        ("v1", 'v2"} or vector(1)', None, "model version 'v2\"} or vector(1)': expected letters"),
        ("v1", "v2", "1 h", "window '1 h': expected a whole number and a unit (s, m, h, d), such as 1h"),
        ("v1", "v2", "h", "window 'h': expected a whole number"),
        ("v1", "v2", "10w", "window '10w': expected"),
    ],
)
def test_a_version_or_window_that_would_change_the_query_is_refused(champion, challenger, window, message):
    with pytest.raises(ValueError) as refused:
        rollout_queries(champion, challenger, window)
    assert str(refused.value).startswith(message)


def test_every_window_unit_is_accepted_and_the_version_may_hold_a_registry_reference():
    for window in ("90s", "15m", "1h", "7d"):
        assert rollout_queries("v1", "gs://b/m@candidate", window)["errors"].endswith(f"[{window}]))")


def test_each_trainer_event_has_its_log_filter_and_no_other_is_accepted():
    assert event_log_filter(GATE_REFUSED) == 'jsonPayload.event="gate_refused" AND jsonPayload.component="trainer"'
    assert event_log_filter(PIPELINE_STEP_FAILED).startswith('jsonPayload.event="pipeline_step_failed" AND ')
    with pytest.raises(ValueError) as unknown:
        event_log_filter("made_up")
    assert str(unknown.value) == "unknown trainer event 'made_up': expected pipeline_step_failed or gate_refused"


def test_the_cloud_monitoring_root_is_the_projects_global_prometheus_api():
    assert promql.cloud_monitoring_url("p-1") == (
        "https://monitoring.googleapis.com/v1/projects/p-1/location/global/prometheus"
    )


class _Prometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query as Prometheus does; other paths and a query containing `broken` fail, `html` answers a
    web page, `untyped` JSON without a Content-Type, `long` a 400-character error, `silent` nothing for 3 s."""

    seen: list[tuple[str, str, str | None]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query).get("query", [""])[0]
        raw_path = self.requestline.split()[1].split("?")[0]  # as sent: http.server collapses a leading "//"
        self.seen.append((raw_path, query, self.headers.get("Authorization")))
        if query == "silent":
            time.sleep(3)  # longer than the asker's timeout below
            return
        if "html" in query:
            status, kind, body = 200, "text/html", b"<html>sign in</html>"
        elif query == "untyped":
            status, kind, body = 200, None, b'{"status": "success", "data": {"result": []}}'
        elif query == "long":
            status, kind, body = 500, "text/plain", b"e" * 400
        elif "broken" in query or raw_path != "/api/v1/query":
            status, kind = 400, "application/json"
            body = json.dumps({"status": "error", "error": "parse error"}).encode()
        else:
            status, kind = 200, "application/json; charset=utf-8"
            result = [{"metric": {"client": "07"}, "value": [1, "3"]}]
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    _Prometheus.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_asker_sends_the_query_and_the_header_and_returns_the_instant_vector(prometheus):
    ask = promql.http_asker(prometheus + "/", {"Authorization": "Bearer t0ken"})
    assert ask('sum by (client) (x{a="b"})') == [{"metric": {"client": "07"}, "value": [1, "3"]}]
    assert _Prometheus.seen == [("/api/v1/query", 'sum by (client) (x{a="b"})', "Bearer t0ken")]
    promql.http_asker(prometheus)("up")
    assert _Prometheus.seen[-1] == ("/api/v1/query", "up", None)


def test_a_failed_query_names_it_the_server_and_the_answer(prometheus):
    with pytest.raises(CommandError) as failed:
        promql.http_asker(prometheus)("broken(")
    assert str(failed.value) == (
        f'PromQL \'broken(\' failed at {prometheus}/api/v1/query: 400 {{"status": "error", "error": "parse error"}}'
    )
    with pytest.raises(CommandError) as page:  # a sign-in page, not the API: refused, not parsed
        promql.http_asker(prometheus)("html")
    assert str(page.value).startswith(f"PromQL 'html' failed at {prometheus}/api/v1/query: 200 <html>")
    with pytest.raises(CommandError) as untyped:  # no Content-Type at all: not taken for JSON
        promql.http_asker(prometheus)("untyped")
    assert str(untyped.value).startswith(f"PromQL 'untyped' failed at {prometheus}/api/v1/query: 200 ")
    with pytest.raises(CommandError) as long:
        promql.http_asker(prometheus)("long")
    assert str(long.value) == f"PromQL 'long' failed at {prometheus}/api/v1/query: 500 " + "e" * 300


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout(prometheus):
    started = time.monotonic()
    with pytest.raises(CommandError) as silent:
        promql.http_asker(prometheus, timeout_s=0.5)("silent")
    assert str(silent.value) == (
        f"cannot reach the Prometheus API at {prometheus} (ReadTimeout): check --prometheus-url"
    )
    assert time.monotonic() - started < 2.5


def test_the_google_asker_asks_cloud_monitoring_with_a_read_only_token(monkeypatch):
    import google.auth
    import google.auth.transport.requests

    calls: list[object] = []

    class Credentials:
        token = "ya29.t0ken"

        def refresh(self, request) -> None:
            calls.append(type(request))

    def default(scopes=None):
        calls.append(scopes)
        return Credentials(), "p-1"

    monkeypatch.setattr(google.auth, "default", default)
    monkeypatch.setattr(promql, "http_asker", lambda url, headers: (url, headers))
    assert promql.google_asker("p-1") == (
        "https://monitoring.googleapis.com/v1/projects/p-1/location/global/prometheus",
        {"Authorization": "Bearer ya29.t0ken"},
    )
    assert calls == [["https://www.googleapis.com/auth/monitoring.read"], google.auth.transport.requests.Request]


def test_an_unreachable_server_is_named_with_the_option_that_sets_it():
    with ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}"
    with pytest.raises(CommandError) as refused:
        promql.http_asker(url, timeout_s=5)("up")
    assert str(refused.value) == (f"cannot reach the Prometheus API at {url} (ConnectionError): check --prometheus-url")


def _ask(table: dict[str, dict[str, float]], label: str = "client"):
    def ask(expr: str):
        return [{"metric": {label: key} if key else {}, "value": [0, str(v)]} for key, v in table.get(expr, {}).items()]

    return ask


def test_the_answers_become_one_tally_per_client_bucket_seen_in_requests_or_comparisons():
    q = rollout_queries("v1", "v2", "1h")
    ask = _ask(
        {
            q["requests"]: {"01": 40, "02": 10},
            q["errors"]: {"02": 1},
            q["compared"]: {"01": 20, "03": 4},
            q["agreed"]: {"01": 19.5, "03": 4},
            q["challenger_seconds"]: {"01": 0.6},
            q["champion_seconds"]: {"01": 0.5},
        }
    )
    assert promql.fleet_tallies(ask, "v1", "v2", "1h") == [
        ClientTally(40, 0, 20, 19.5, 0.6, 0.5),
        ClientTally(10, 1, 0, 0, 0, 0),
        ClientTally(0, 0, 4, 4, 0, 0),
    ]
    assert promql.by_client([{"metric": {}, "value": [0, "2.5"]}]) == {"": 2.5}  # a series without the label


def test_a_versions_accuracy_credits_each_poster_up_to_the_cap_and_skips_posters_without_labels():
    q = feedback_queries("v2", "1h")
    ask = _ask({q["labelled"]: {"a": 300, "b": 50, "": 10}, q["correct"]: {"a": 150, "b": 45}}, "poster")
    assert promql.fleet_accuracy(ask, "v2", 100, "1h") == Accuracy(50 + 45 + 0, 100 + 50 + 10, 3)


def test_the_fleet_verdict_judges_the_summed_counters_with_the_thresholds_and_window_given():
    asked: list[str] = []
    q, champion, challenger = (
        rollout_queries("v1", "v2", "2h"),
        feedback_queries("v1", "2h"),
        feedback_queries("v2", "2h"),
    )
    table = {
        q["requests"]: {f"{i:02}": 60 for i in range(10)},  # 10 clients, 60 each, capped at 50
        q["errors"]: {"00": 3},  # 2.5 once its 60 requests count as 50
        q["compared"]: {f"{i:02}": 50 for i in range(10)},
        q["agreed"]: {f"{i:02}": 50 for i in range(10)},
        q["challenger_seconds"]: {f"{i:02}": 1.0 for i in range(10)},
        q["champion_seconds"]: {f"{i:02}": 1.0 for i in range(10)},
    }
    labels = {champion["labelled"]: {"p": 10}, champion["correct"]: {"p": 9}}
    labels |= {challenger["labelled"]: {"p": 10}, challenger["correct"]: {"p": 9}}
    table |= labels

    def ask(expr: str):
        asked.append(expr)
        label = "poster" if "feedback" in expr else "client"
        return _ask(table, label)(expr)

    thresholds = Thresholds(min_requests=400, min_clients=10, max_client_requests=50, max_poster_labels=100)
    decision, evidence = promql.fleet_verdict(ask, "v1", "v2", thresholds, "2h")
    assert (evidence.clients, evidence.requests, evidence.errors) == (10, 500.0, 2.5)
    assert evidence.latency_ratio == 1.0
    assert (decision.decision, decision.reasons) == (
        "promote",
        ["challenger v2 passed every check on 500 requests from 10 clients"],
    )
    assert set(asked) == {*q.values(), *champion.values(), *challenger.values()}
    stricter = Thresholds(min_requests=600, min_clients=10, max_client_requests=50)
    assert promql.fleet_verdict(ask, "v1", "v2", stricter, "2h")[0].decision == "wait"  # 500 credited < 600


def _fleet(clients: int, challenger_seconds: float):
    q = rollout_queries("v1", "v2")
    per_client = {
        "requests": 50.0,
        "errors": 0.0,
        "compared": 50.0,
        "agreed": 50.0,
        "challenger_seconds": challenger_seconds,
        "champion_seconds": 1.0,
    }
    table = {q[name]: {f"{i:02}": value for i in range(clients)} for name, value in per_client.items()}
    return _ask(table)


def test_too_few_distinct_clients_wait_however_many_requests_they_sent():
    thresholds = Thresholds(min_requests=400, min_clients=10, max_client_requests=50)
    decision, evidence = promql.fleet_verdict(_fleet(9, 1.0), "v1", "v2", thresholds)
    assert evidence.clients == 9 and decision.decision == "wait"
    assert "challenger seen by 9 of the 10 distinct clients needed" in decision.reasons


def test_a_challenger_slower_on_the_same_images_across_the_fleet_is_rolled_back():
    thresholds = Thresholds(min_requests=400, min_clients=10, max_client_requests=50, max_latency_ratio=1.5)
    decision, evidence = promql.fleet_verdict(_fleet(10, 2.0), "v1", "v2", thresholds)
    assert evidence.latency_ratio == 2.0
    assert (decision.decision, decision.codes) == ("rollback", ["latency_high"])


def test_one_client_is_a_valid_minimum_and_every_allowed_character_a_valid_version():
    from contracts.monitoring_queries import _VERSION_CHARS, drift_fleet_promql

    assert drift_fleet_promql(1, "1h").endswith(") >= 1")
    every = "".join(sorted(_VERSION_CHARS))
    assert f'model_version="{every}"' in rollout_queries("v1", every)["requests"]


def test_the_accuracy_queries_refuse_a_window_as_the_rollout_queries_do():
    with pytest.raises(ValueError) as refused:
        feedback_queries("v2", "1 hour", by="class_name")
    assert str(refused.value) == "window '1 hour': expected a whole number and a unit (s, m, h, d), such as 1h"
