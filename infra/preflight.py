"""`python -m infra.preflight ENV`: refuse a deploy while config/<env>.yaml still holds placeholder values.

Why two guards: the committed configs hold placeholders on purpose (synth, scans and tests run offline with them),
but a deploy with them creates a budget on no real billing account and alerts nobody. The deploy path (Makefile,
Cloud Build) runs this preflight before any cloud call; infra/guard.py also writes the same list into each stack
as a Terraform variable whose validation fails `terraform plan` before any provider is called, so a bare
`cdktf deploy` stops too. Each message names the key and how to set it.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Mapping
from urllib.parse import urlparse

from settings import ConfigError, Settings, load_config

PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net")
PLACEHOLDER_OWNERS = ("example-org", "example")


def _override(key: str) -> str:
    return "FMNIST_INFRA__" + key.upper()


def placeholder_problems(settings: Settings) -> list[str]:
    """One line per setting a deploy of this environment must not use as committed."""
    infra, where = settings.infra, f"config/{settings.env}.yaml"
    problems = []
    if infra.billing_account is None or re.fullmatch(r"0{6}-0{6}-0{6}", infra.billing_account):
        problems.append(
            f"infra.billing_account is {infra.billing_account!r}, a placeholder: set your billing account id in "
            f"{where} or {_override('billing_account')} (`gcloud billing accounts list`)"
        )
    if infra.budget_currency is None:
        problems.append(
            f"infra.budget_currency is not set: it must equal the billing account's currency; set it in {where} "
            f"or {_override('budget_currency')} "
            "(`gcloud billing accounts describe ACCOUNT --format='value(currencyCode)'`)"
        )
    if infra.github_owner in PLACEHOLDER_OWNERS:
        problems.append(
            f"infra.github_owner is {infra.github_owner!r}, a placeholder: set the GitHub owner of the repository "
            f"in {where} or {_override('github_owner')}"
        )
    if infra.alert_email.rsplit("@", 1)[-1].lower() in PLACEHOLDER_DOMAINS:
        problems.append(
            f"infra.alert_email is {infra.alert_email!r}, an address nobody reads: set it in {where} or "
            f"{_override('alert_email')}"
        )
    for member in infra.invokers:  # user:/group:/serviceAccount: name@DOMAIN, or domain:DOMAIN
        if member.rsplit("@", 1)[-1].rpartition(":")[2].lower() in PLACEHOLDER_DOMAINS:
            problems.append(f"infra.invokers lists {member!r}, a placeholder: set real members in {where}")
    return problems


DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
PASSWORD_VARIABLE = "DOCKER_REGISTRY_PASS"


def _ping_docker(host: str, timeout: float = 5.0) -> str | None:
    """None when the daemon at `host` answers `/_ping` (the call the docker provider makes when configured)."""
    url = urlparse(host)
    try:
        if url.scheme == "unix":
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(timeout)
            client.connect(url.path)
        elif url.scheme == "tcp":
            client = socket.create_connection((url.hostname or "localhost", url.port or 2375), timeout=timeout)
        else:
            return f"DOCKER_HOST {host!r} is neither unix:// nor tcp://: this check cannot reach it"
        with client:
            client.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = client.recv(1024).decode(errors="replace")
    except OSError as exc:
        return f"no Docker daemon at {host} ({exc})"
    return None if answer.startswith("HTTP/") and " 200 " in answer.split("\r\n", 1)[0] else f"{host}: {answer[:80]!r}"


def deploy_tool_problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """What `cdktf deploy` of an environment stack needs on this machine, checked before any cloud call: the
    docker provider pings a daemon when it is configured and pushes with DOCKER_REGISTRY_PASS (empty: an
    anonymous push that fails after the builds)."""
    environ = os.environ if environ is None else environ
    problems = []
    if not environ.get(PASSWORD_VARIABLE, "").strip():
        problems.append(
            f"{PASSWORD_VARIABLE} is empty: the image push would authenticate with no password; export an access "
            f'token first ({PASSWORD_VARIABLE}="$(gcloud auth print-access-token)"; `make deploy` does)'
        )
    host = environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    unreachable = _ping_docker(host)
    if unreachable:
        problems.append(f"{unreachable}: the image builds need a running Docker daemon where `cdktf deploy` runs")
    return problems


def billing_note(settings: Settings) -> str:
    """Who may run the first deploy: the budget needs billing.budgets.create on the billing account."""
    return (
        f"note: the budget needs billing.budgets.create on billing account {settings.infra.billing_account}, which "
        "a project Owner does not have: run the deploy as the deployer account (bootstrap grants it "
        "roles/billing.costsManager there when infra.grant_billing_roles is true) or as a billing account "
        "administrator"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.preflight", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("env", help="environment (config/<env>.yaml); `bootstrap-<env>` names the same one")
    parser.add_argument(
        "--deploy", action="store_true", help="also check the Docker daemon and DOCKER_REGISTRY_PASS, first"
    )
    args = parser.parse_args(argv)
    env = args.env.removeprefix("bootstrap-")
    if args.deploy and not args.env.startswith("bootstrap-"):
        tool_problems = deploy_tool_problems()
        for problem in tool_problems:
            print(f"error: {problem}", file=sys.stderr)
        if tool_problems:
            print(f"refusing to deploy {args.env}: {len(tool_problems)} problem(s) above", file=sys.stderr)
            return 1
    try:
        settings = load_config(env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.target != "gcp":
        print(f"error: {env} has target '{settings.target}': nothing to deploy on Google Cloud", file=sys.stderr)
        return 2
    problems = placeholder_problems(settings)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"refusing to deploy {args.env}: {len(problems)} placeholder setting(s) above", file=sys.stderr)
        return 1
    impersonated = os.environ.get("CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT", "")
    if args.deploy and not args.env.startswith("bootstrap-") and "-deployer@" not in impersonated:
        print(billing_note(settings), file=sys.stderr)  # it cannot tell who gcloud is otherwise: say it
    print(f"preflight {args.env}: no placeholder settings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
