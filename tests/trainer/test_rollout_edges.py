"""`trainer rollout` at its edges: models outside the naming scheme or the traffic split, the exact message when no
canary runs, figures with no points, and the exact calls a verdict makes (found by `make mutate`)."""

from types import SimpleNamespace

import pytest
from google.cloud import monitoring_v3

from contracts.rollout import Verdict
from settings import load_config
from trainer.cloud import rollout
from trainer.cloud.rollout import Deployed
from trainer.errors import CommandError

CHAMPION, CHALLENGER = Deployed("111", "v1", 90), Deployed("222", "v2", 10)
HINT = "Start one with `python -m trainer deploy-model candidate --canary 10`"


def test_a_model_outside_the_split_has_no_traffic_and_a_foreign_name_is_kept():
    endpoint = SimpleNamespace(
        traffic_split={"111": 100},  # the endpoint omits models at 0 %
        list_models=lambda: [
            SimpleNamespace(id=111, display_name="fmnist-v1"),
            SimpleNamespace(id=333, display_name="hand-deployed"),
        ],
    )
    assert rollout.deployed_models(endpoint) == [Deployed("111", "v1", 100), Deployed("333", "hand-deployed", 0)]


@pytest.mark.parametrize(
    "deployed, found",
    [
        ([], "found 0: none"),
        ([CHAMPION], "found 1: v1 (90 %)"),
        ([CHAMPION, CHALLENGER, Deployed("3", "v3", 0)], "found 3: v1 (90 %), v2 (10 %), v3 (0 %)"),
    ],
)
def test_without_exactly_two_models_the_message_lists_them_and_says_how_to_start(deployed, found):
    with pytest.raises(CommandError) as raised:
        rollout.canary_pair(deployed)
    assert str(raised.value) == f"a canary needs exactly two deployed models on the endpoint, {found}. {HINT}"


def test_each_figure_is_read_for_the_deployed_model_and_no_points_mean_none():
    requests = []

    class Client:
        def list_time_series(self, request):
            requests.append(request)
            return [monitoring_v3.TimeSeries(points=[])]

    names = load_config("dev", environ={}).names
    stats = rollout.read_stats(Client(), names, CHALLENGER, 600, 1_800_000_000)
    assert (stats.requests, stats.errors, stats.latency_p99_ms) == (0, 0, None)
    assert [r["filter"].endswith('metric.labels.deployed_model_id = "222"') for r in requests] == [True] * 3


def test_the_calls_of_each_verdict_exactly():
    assert rollout.plan(Verdict("promote"), CHAMPION, CHALLENGER) == [
        ("update", {"traffic_split": {"222": 100}}),
        ("undeploy", {"deployed_model_id": "111", "sync": True}),  # wait: the record follows the undeploy
    ]
    assert rollout.plan(Verdict("rollback"), CHAMPION, CHALLENGER) == [
        ("undeploy", {"deployed_model_id": "222", "traffic_split": {"111": 100}, "sync": True})
    ]
    assert rollout.plan(Verdict("wait"), CHAMPION, CHALLENGER) == []


@pytest.fixture
def replying():
    """A loopback HTTP server whose one reply (status, body) the test sets; it records the paths asked for."""
    import http.server
    import threading

    state = SimpleNamespace(status=200, body=b"{}", paths=[])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.paths.append(self.path)
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_the_service_verdict_is_read_from_its_route_and_every_failure_says_what_to_do(replying):
    replying.body = b'{"mode": "shadow", "verdict": {"decision": "wait", "reasons": []}}'
    assert rollout.read_service_verdict(replying.url + "/")["mode"] == "shadow"  # a trailing slash is fine
    assert replying.paths == ["/monitoring/rollout"]

    replying.status, replying.body = 503, b"x" * 400
    with pytest.raises(CommandError) as raised:
        rollout.read_service_verdict(replying.url)
    assert str(raised.value) == f"GET {replying.url}/monitoring/rollout answered 503: {'x' * 300}"

    replying.status, replying.body = 200, b"<html>"
    with pytest.raises(CommandError) as raised:
        rollout.read_service_verdict(replying.url)
    assert str(raised.value) == (
        f"GET {replying.url}/monitoring/rollout did not answer JSON: is {replying.url} the prediction service?"
    )

    replying.body = b'{"mode": "off"}'
    with pytest.raises(CommandError) as raised:
        rollout.read_service_verdict(replying.url)
    assert str(raised.value) == (
        f"the service at {replying.url} runs no rollout (no CHALLENGER configured): restart it with "
        "CHALLENGER=candidate ROLLOUT_MODE=shadow (or canary)"
    )


def test_an_unreachable_or_silent_service_fails_in_time_naming_the_fix():
    import socket
    import time

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
    with pytest.raises(CommandError) as raised:
        rollout.read_service_verdict(url)
    assert str(raised.value) == (
        f"cannot reach the prediction service at {url} (ConnectionError): start it with a challenger, "
        "e.g. CHALLENGER=candidate python -m service, or pass --service-url"
    )
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(CommandError, match=r"\(ReadTimeout\)"):
            rollout.read_service_verdict(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        assert time.monotonic() - started < 10


class _Vertex:
    """The endpoint and Cloud Monitoring as `trainer rollout --env dev` sees them: two deployed models, each
    version's figures, and every call recorded with the champion alias at the moment of the call."""

    def __init__(self, registry, champion: str, challenger: str, challenger_errors: int = 0):
        self.calls: list[tuple] = []
        self.registry = registry
        figures = {"1": (1000, 0, 10.0), "2": (1000, challenger_errors, 10.0)}
        vertex = self

        class Endpoint:
            traffic_split = {"1": 90, "2": 10}

            def __init__(self, name):
                vertex.calls.append(("endpoint", name))

            def list_models(self):
                return [
                    SimpleNamespace(id="1", display_name=f"fmnist-{champion}"),
                    SimpleNamespace(id="2", display_name=f"fmnist-{challenger}"),
                ]

            def update(self, **kwargs):
                vertex.calls.append(("update", kwargs, vertex.champion()))

            def undeploy(self, **kwargs):
                vertex.calls.append(("undeploy", kwargs, vertex.champion()))

        class Client:
            def list_time_series(self, request):
                model = request["filter"].rsplit('"', 2)[1]
                metric = request["filter"].split('"')[1].rsplit("/", 1)[1]
                requests, errors, p99 = figures[model]
                value = {"prediction_count": requests, "error_count": errors, "prediction_latencies": p99}[metric]
                kind = "double_value" if metric == "prediction_latencies" else "int64_value"
                return [monitoring_v3.TimeSeries(points=[monitoring_v3.Point(value={kind: value})])]

        self.Endpoint, self.Client = Endpoint, Client

    def champion(self) -> str:
        return self.registry.read_index().aliases["champion"]

    def install(self, monkeypatch):
        from google.cloud import aiplatform

        monkeypatch.setattr(aiplatform, "init", lambda **kwargs: self.calls.append(("init", kwargs)))
        monkeypatch.setattr(aiplatform, "Endpoint", self.Endpoint)
        monkeypatch.setattr(monitoring_v3, "MetricServiceClient", self.Client)


@pytest.fixture
def vertex_canary(gcs_settings, monkeypatch):
    from trainer.models.registry import ModelRegistry, register_external_version

    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    registry = ModelRegistry.from_settings(gcs_settings)
    versions = [
        register_external_version(gcs_settings, source="custom", metrics={"accuracy": a}, dataset_version="d")
        for a in (0.90, 0.95)
    ]
    registry.promote(versions[0])
    return registry, *versions


def test_a_failing_vertex_canary_is_undeployed_and_the_champion_stays(vertex_canary, monkeypatch, capsys):
    from trainer.cli import main

    registry, champion, challenger = vertex_canary
    vertex = _Vertex(registry, champion, challenger, challenger_errors=100)
    vertex.install(monkeypatch)
    before = registry.read_index()
    assert main(["--env", "dev", "rollout"]) == 0
    assert vertex.calls[2:] == [
        ("undeploy", {"deployed_model_id": "2", "traffic_split": {"1": 100}, "sync": True}, champion)
    ]
    # on Google Cloud only the promoter writes the index: the rollback is recorded in the output, the index unchanged
    assert registry.read_index() == before and registry.read_index().alias("champion") == champion
    out = capsys.readouterr().out
    assert f"canary-rollback of {challenger} not written to {registry.index_uri}" in out
    assert "error rate 10.00%" in out
