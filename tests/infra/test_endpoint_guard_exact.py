"""The destroy's endpoint check (infra/endpoint_guard.py), message by message and stream by stream: the verdict a
user reads for each answer of the endpoint's GET, the exit status `make destroy` acts on, and an unknown
environment refused with status 2 before any request."""

from __future__ import annotations

import threading

import pytest

from infra.endpoint_guard import Verdict, judge, main
from settings import load_config

ENDPOINT = "projects/fmnist-mlops-dev/locations/europe-west4/endpoints/1001"
URL = f"https://europe-west4-aiplatform.googleapis.com/v1/{ENDPOINT}"


@pytest.fixture(scope="module")
def names():
    return load_config("dev", environ={}).names


def test_every_verdict_word_for_word(names):
    assert judge(names, 404, {"error": {"message": "gone"}}) == Verdict(
        True, f"endpoint {ENDPOINT} does not exist: nothing deployed"
    )
    assert judge(names, 200, {}) == Verdict(True, f"endpoint {ENDPOINT} has no deployed model")
    assert judge(names, 200, {"deployedModels": []}) == Verdict(True, f"endpoint {ENDPOINT} has no deployed model")
    assert judge(names, 403, {"error": {"message": "denied"}}) == Verdict(
        False,
        f"cannot read endpoint {ENDPOINT} (HTTP 403: denied); not destroying",
    )
    assert judge(names, 500, {}) == Verdict(
        False, f"cannot read endpoint {ENDPOINT} (HTTP 500: no detail); not destroying"
    )
    assert judge(names, 502, {"error": {}}).message == (
        f"cannot read endpoint {ENDPOINT} (HTTP 502: no detail); not destroying"
    )
    deployed = [{"id": "42", "model": "projects/p/models/a"}, {"model": "projects/p/models/b"}, {"id": "9"}]
    assert judge(names, 200, {"deployedModels": deployed}) == Verdict(
        False,
        f"refusing to destroy dev: 3 model(s) still deployed on {ENDPOINT}: 42 (projects/p/models/a), "
        "? (projects/p/models/b), 9 (?). Run `python -m trainer --env dev undeploy-all --yes` first "
        "(`make destroy` does).",
    )


def test_the_cli_asks_the_declared_endpoint_and_prints_on_the_right_stream(capsys):
    asked = []

    def deployed(url):
        asked.append(url)
        return 200, {"deployedModels": [{"id": "7", "model": "m"}]}

    assert main(["dev"], fetch=deployed) == 1
    out, err = capsys.readouterr()
    assert asked == [URL] and out == ""
    assert err == (
        f"refusing to destroy dev: 1 model(s) still deployed on {ENDPOINT}: 7 (m). Run `python -m trainer --env dev "
        "undeploy-all --yes` first (`make destroy` does).\n"
    )
    assert main(["dev"], fetch=lambda url: (200, {})) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"endpoint {ENDPOINT} has no deployed model\n", "")


def test_an_unknown_environment_is_refused_before_any_request(capsys):
    def never(url):
        raise AssertionError(f"asked {url}")

    assert main(["nowhere"], fetch=never) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and "nowhere" in err


@pytest.fixture
def endpoint_server():
    """An HTTP server standing in for the endpoint's GET: JSON at /v1/ok, an HTML error page at /v1/html."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            status, kind, body = (
                (200, "application/json", b'{"deployedModels": [{"id": "1", "model": "m"}]}')
                if self.path == "/v1/ok"
                else (502, "text/html", b"<html>bad gateway</html>")
            )
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_fetch_over_the_wire_with_the_cloud_platform_scope(endpoint_server, monkeypatch):
    """`fetch_endpoint` with anonymous credentials against a local server: the scope it asks for, its timeout,
    the answer's status and JSON, and an error page that is not JSON read as an empty body (the verdict's
    'no detail'), not a crash."""
    google_auth = pytest.importorskip("google.auth")
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import AuthorizedSession

    from infra.endpoint_guard import fetch_endpoint

    scopes, timeouts = [], []

    def default(scopes_=None, **kwargs):
        scopes.append(kwargs.get("scopes", scopes_))
        return AnonymousCredentials(), None

    request = AuthorizedSession.request

    def recording(self, method, url, *args, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        return request(self, method, url, *args, **kwargs)

    monkeypatch.setattr(google_auth, "default", default)
    monkeypatch.setattr(AuthorizedSession, "request", recording)
    base, asked = endpoint_server
    assert fetch_endpoint(f"{base}/v1/ok") == (200, {"deployedModels": [{"id": "1", "model": "m"}]})
    assert fetch_endpoint(f"{base}/v1/html") == (502, {})
    assert asked == ["/v1/ok", "/v1/html"]
    assert scopes == [["https://www.googleapis.com/auth/cloud-platform"]] * 2
    assert timeouts == [30, 30]


def test_the_usage_and_help_name_the_command(capsys):
    with pytest.raises(SystemExit) as missing:
        main([])
    assert missing.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m infra.endpoint_guard [-h] env\n")
    with pytest.raises(SystemExit) as shown:
        main(["--help"])
    assert shown.value.code == 0
    assert " ".join(capsys.readouterr().out.split("\n\n")[1].split()) == (
        "`python -m infra.endpoint_guard ENV`: refuse `cdktf destroy` while models are deployed on the Vertex AI "
        "endpoint."
    )
