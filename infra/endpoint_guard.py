"""`python -m infra.endpoint_guard ENV`: refuse `cdktf destroy` while models are deployed on the Vertex AI endpoint.

Why: the SDK deploys models (`python -m trainer deploy-model`), Terraform cannot see or undeploy them, and an
endpoint with deployed models cannot be deleted, so a destroy would fail halfway. The destroy path (Makefile
`destroy`, the Cloud Build destroy pipeline) runs `trainer undeploy-all` and then this check. The request is
built and judged by pure functions; only `fetch_endpoint` talks to Google Cloud.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from contracts.cloud import CloudNames
from settings import ConfigError, load_config


@dataclass(frozen=True)
class Verdict:
    may_destroy: bool
    message: str


def endpoint_url(names: CloudNames) -> str:
    return f"https://{names.region}-aiplatform.googleapis.com/v1/{names.endpoint_name}"


def judge(names: CloudNames, status: int, body: dict) -> Verdict:
    """The endpoint's GET answer -> may the destroy go ahead?"""
    if status == 404:
        return Verdict(True, f"endpoint {names.endpoint_name} does not exist: nothing deployed")
    if status != 200:
        error = body.get("error", {}).get("message", "no detail")
        return Verdict(False, f"cannot read endpoint {names.endpoint_name} (HTTP {status}: {error}); not destroying")
    deployed = body.get("deployedModels", [])
    if not deployed:
        return Verdict(True, f"endpoint {names.endpoint_name} has no deployed model")
    models = ", ".join(f"{m.get('id', '?')} ({m.get('model', '?')})" for m in deployed)
    return Verdict(
        False,
        f"refusing to destroy {names.env}: {len(deployed)} model(s) still deployed on {names.endpoint_name}: "
        f"{models}. Run `python -m trainer --env {names.env} undeploy-all --yes` first (`make destroy` does).",
    )


def fetch_endpoint(url: str) -> tuple[int, dict]:  # pragma: no cover - needs Google Cloud credentials
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    response = AuthorizedSession(credentials).get(url, timeout=30)
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = {}
    return response.status_code, body


def main(argv: list[str] | None = None, fetch=fetch_endpoint) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.endpoint_guard", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("env")
    args = parser.parse_args(argv)
    try:
        names = load_config(args.env).names
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = judge(names, *fetch(endpoint_url(names)))
    print(verdict.message, file=sys.stdout if verdict.may_destroy else sys.stderr)
    return 0 if verdict.may_destroy else 1


if __name__ == "__main__":
    raise SystemExit(main())
