"""The deploy's preflight (infra/preflight.py) word for word: each placeholder line with its key, file and override
variable, the Docker daemon's ping over a Unix socket and TCP (the request's bytes, the status line that counts,
the timeout, the default host and port), and `python -m infra.preflight`'s exit status, streams and messages for
each path a user takes (bootstrap, deploy, deploy as the deployer account, an unknown or local environment)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import infra.preflight as preflight
from infra.preflight import billing_note, deploy_tool_problems, main, placeholder_problems
from settings import load_config

REAL = {
    "FMNIST_INFRA__BILLING_ACCOUNT": "01A2B3-C4D5E6-F7A8B9",
    "FMNIST_INFRA__BUDGET_CURRENCY": "EUR",
    "FMNIST_INFRA__GITHUB_OWNER": "fmnist-team",
    "FMNIST_INFRA__ALERT_EMAIL": "oncall@fmnist.dev",
}
PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
DEV_LINES = [
    "infra.billing_account is '000000-000000-000000', a placeholder: set your billing account id in config/dev.yaml "
    "or FMNIST_INFRA__BILLING_ACCOUNT (`gcloud billing accounts list`)",
    "infra.budget_currency is not set: it must equal the billing account's currency; set it in config/dev.yaml or "
    "FMNIST_INFRA__BUDGET_CURRENCY (`gcloud billing accounts describe ACCOUNT --format='value(currencyCode)'`)",
    "infra.github_owner is 'example-org', a placeholder: set the GitHub owner of the repository in config/dev.yaml "
    "or FMNIST_INFRA__GITHUB_OWNER",
    "infra.alert_email is 'mlops-alerts@example.com', an address nobody reads: set it in config/dev.yaml or "
    "FMNIST_INFRA__ALERT_EMAIL",
]


def _with(settings, **infra):
    return settings.model_copy(update={"infra": settings.infra.model_copy(update=infra)})


def test_each_placeholder_line_word_for_word():
    assert placeholder_problems(load_config("dev", environ={})) == DEV_LINES


def test_an_unset_account_the_other_owner_and_domains_and_placeholder_invokers_are_named():
    settings = _with(
        load_config("prod", environ=REAL),
        billing_account=None,
        github_owner="example",
        alert_email="Ops@Example.NET",
        invokers=[
            "user:a@example.org",
            "user:b@fmnist.dev",
            "group:c@EXAMPLE.COM",
            "serviceAccount:x@example.net",
            "domain:Example.com",  # a whole domain: no @, the placeholder after the colon
        ],
    )
    assert placeholder_problems(settings) == [
        "infra.billing_account is None, a placeholder: set your billing account id in config/prod.yaml or "
        "FMNIST_INFRA__BILLING_ACCOUNT (`gcloud billing accounts list`)",
        "infra.github_owner is 'example', a placeholder: set the GitHub owner of the repository in config/prod.yaml "
        "or FMNIST_INFRA__GITHUB_OWNER",
        "infra.alert_email is 'Ops@Example.NET', an address nobody reads: set it in config/prod.yaml or "
        "FMNIST_INFRA__ALERT_EMAIL",
        "infra.invokers lists 'user:a@example.org', a placeholder: set real members in config/prod.yaml",
        "infra.invokers lists 'group:c@EXAMPLE.COM', a placeholder: set real members in config/prod.yaml",
        "infra.invokers lists 'serviceAccount:x@example.net', a placeholder: set real members in config/prod.yaml",
        "infra.invokers lists 'domain:Example.com', a placeholder: set real members in config/prod.yaml",
    ]


def test_names_that_only_look_like_placeholders_pass():
    settings = _with(
        load_config("dev", environ=REAL),
        billing_account="000000-000000-00000A",
        github_owner="example-team",
        alert_email="example.com@fmnist.dev",
        invokers=["user:example.com@fmnist.dev", "domain:example.com.fmnist.dev"],
    )
    assert placeholder_problems(settings) == []


class _Daemon:
    """A server (Unix socket or TCP) that records the request and answers it with the given bytes (None: never)."""

    def __init__(self, server: socket.socket, answer: bytes | None):
        self.server, self.answer, self.requests = server, answer, []
        self.stop = threading.Event()
        server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            connection, _ = self.server.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(5)
            self.requests.append(connection.recv(4096))
            if self.answer is None:
                self.stop.wait(5)
            else:
                connection.sendall(self.answer)

    def close(self):
        self.stop.set()
        self.server.close()
        self.thread.join(timeout=5)


@pytest.fixture
def unix_daemon(tmp_path):
    started = []

    def start(answer: bytes | None) -> tuple[str, _Daemon]:
        path = tmp_path / f"docker{len(started)}.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        started.append(_Daemon(server, answer))
        return f"unix://{path}", started[-1]

    yield start
    for daemon in started:
        daemon.close()


@pytest.fixture
def tcp_daemon():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    daemon = _Daemon(server, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    yield server.getsockname()[1], daemon
    daemon.close()


def test_a_daemon_over_unix_answers_the_exact_ping_and_undecodable_bytes_do_not_crash(unix_daemon):
    host, daemon = unix_daemon(b"HTTP/1.1 200 OK\r\nApi-Version: \xff\xfe\r\n\r\nOK")
    assert preflight._ping_docker(host) is None
    assert daemon.requests == [PING]


def test_only_a_200_status_line_counts(unix_daemon):
    long = b"HTTP/1.1 500 Internal Server Error\r\nX-Note: 200 \r\n" + b"a" * 100
    host, _ = unix_daemon(long)
    assert preflight._ping_docker(host) == f"{host}: {long.decode()[:80]!r}"
    host, _ = unix_daemon(b"XTTP/1.1 200 OK\r\n\r\n")
    assert preflight._ping_docker(host) == f"{host}: 'XTTP/1.1 200 OK\\r\\n\\r\\n'"


def test_a_silent_daemon_times_out_within_the_timeout(unix_daemon):
    host, _ = unix_daemon(None)
    started = time.monotonic()
    assert preflight._ping_docker(host, timeout=0.3) == f"no Docker daemon at {host} (timed out)"
    assert time.monotonic() - started < 4  # the daemon stays silent for 5 s


def test_a_daemon_over_tcp_at_the_given_and_the_default_host_and_port(tcp_daemon, monkeypatch):
    port, daemon = tcp_daemon
    calls = []
    connect = socket.create_connection

    def recording(address, timeout):
        calls.append((address, timeout))
        if address[1] == 2375:
            raise ConnectionRefusedError(111, "Connection refused")
        return connect(address, timeout=timeout)

    monkeypatch.setattr(preflight.socket, "create_connection", recording)
    assert preflight._ping_docker(f"tcp://127.0.0.1:{port}") is None
    assert daemon.requests == [PING]
    assert calls == [(("127.0.0.1", port), 5.0)]
    # no host, no port: Docker's defaults (refused here: nothing may listen on 2375 while tests run)
    assert preflight._ping_docker("tcp://") == "no Docker daemon at tcp:// ([Errno 111] Connection refused)"
    assert calls[1:] == [(("localhost", 2375), 5.0)]


def test_another_scheme_is_named():
    assert preflight._ping_docker("ssh://me@host") == (
        "DOCKER_HOST 'ssh://me@host' is neither unix:// nor tcp://: this check cannot reach it"
    )


def test_the_deploy_check_word_for_word(tmp_path):
    host = f"unix://{tmp_path}/none.sock"
    assert deploy_tool_problems({"DOCKER_HOST": host}) == [
        "DOCKER_REGISTRY_PASS is empty: the image push would authenticate with no password; export an access token "
        'first (DOCKER_REGISTRY_PASS="$(gcloud auth print-access-token)"; `make deploy` does)',
        f"no Docker daemon at {host} ([Errno 2] No such file or directory): the image builds need a running Docker "
        "daemon where `cdktf deploy` runs",
    ]


def test_the_deploy_check_reads_the_process_environment_and_defaults_the_host(monkeypatch, unix_daemon):
    host, _ = unix_daemon(b"HTTP/1.1 200 OK\r\n\r\n")
    monkeypatch.setenv("DOCKER_HOST", host)
    monkeypatch.setenv("DOCKER_REGISTRY_PASS", "token")
    assert deploy_tool_problems() == []
    pinged = []
    ping = preflight._ping_docker
    monkeypatch.setattr(preflight, "_ping_docker", lambda host: pinged.append(host) or ping(host))
    deploy_tool_problems({"DOCKER_HOST": "", "DOCKER_REGISTRY_PASS": "token"})
    assert pinged == ["unix:///var/run/docker.sock"]


def test_the_billing_note_word_for_word():
    assert billing_note(load_config("dev", environ=REAL)) == (
        "note: the budget needs billing.budgets.create on billing account 01A2B3-C4D5E6-F7A8B9, which a project "
        "Owner does not have: run the deploy as the deployer account (bootstrap grants it roles/billing.costsManager "
        "there when infra.grant_billing_roles is true) or as a billing account administrator"
    )


@pytest.fixture
def real_env(monkeypatch):
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT", raising=False)


def test_the_cli_refuses_placeholders_word_for_word(monkeypatch, capsys):
    for name in REAL:
        monkeypatch.delenv(name, raising=False)
    assert main(["bootstrap-dev"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "".join(f"error: {line}\n" for line in DEV_LINES) + (
        "refusing to deploy bootstrap-dev: 4 placeholder setting(s) above\n"
    )


def test_the_cli_passes_real_values_and_bootstrap_needs_no_daemon(real_env, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.delenv("DOCKER_REGISTRY_PASS", raising=False)
    assert main(["--deploy", "bootstrap-dev"]) == 0
    assert capsys.readouterr() == ("preflight bootstrap-dev: no placeholder settings\n", "")
    assert main(["dev"]) == 0
    assert capsys.readouterr() == ("preflight dev: no placeholder settings\n", "")


def test_the_deploy_cli_refuses_tool_problems_word_for_word(real_env, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("DOCKER_REGISTRY_PASS", "token")
    assert main(["--deploy", "dev"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: no Docker daemon at unix://{tmp_path}/none.sock ([Errno 2] No such file or directory): the image "
        "builds need a running Docker daemon where `cdktf deploy` runs\n"
        "refusing to deploy dev: 1 problem(s) above\n"
    )


def test_the_deploy_cli_notes_the_budget_unless_run_as_the_deployer(real_env, monkeypatch, capsys, unix_daemon):
    monkeypatch.setenv("DOCKER_REGISTRY_PASS", "token")
    note = billing_note(load_config("dev", environ=REAL)) + "\n"
    for account, expected in [
        ("", note),
        ("planner@p.iam.gserviceaccount.com", note),
        ("fmnist-deployer@fmnist-mlops-dev.iam.gserviceaccount.com", ""),
    ]:
        monkeypatch.setenv("DOCKER_HOST", unix_daemon(b"HTTP/1.1 200 OK\r\n\r\n")[0])
        monkeypatch.setenv("CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT", account)
        assert main(["--deploy", "dev"]) == 0, account
        assert capsys.readouterr() == ("preflight dev: no placeholder settings\n", expected), account


def test_an_unknown_or_local_environment_exits_2(capsys):
    assert main(["bootstrap-nowhere"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and "'nowhere'" in err
    assert main(["local"]) == 2
    assert capsys.readouterr() == ("", "error: local has target 'local': nothing to deploy on Google Cloud\n")


def test_the_usage_and_help_name_the_command(capsys):
    with pytest.raises(SystemExit) as missing:
        main([])
    assert missing.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m infra.preflight [-h] [--deploy] env\n")
    with pytest.raises(SystemExit) as shown:
        main(["--help"])
    assert shown.value.code == 0
    assert " ".join(capsys.readouterr().out.split("\n\n")[1].split()) == (
        "`python -m infra.preflight ENV`: refuse a deploy while config/<env>.yaml still holds placeholder values."
    )
