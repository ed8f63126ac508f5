"""The Cloud Run function's entry point (functions-framework, `--target start`): one request, one decision.

Answers 200 with {"action": started | exists | deferred | nothing-deferred | ignored, "run", "reason"} (an ignored
event is not an error: its sender must not retry it), 400 for a request it cannot read (with what to send), 500
when Vertex AI or Cloud Storage failed (Eventarc and Cloud Scheduler retry). The source archive puts this file at
its root, beside the `starter` and `contracts` packages (infra/components/starter_source.py).
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from typing import Any

import flask
import functions_framework
import requests

from contracts.starter import StarterEnv
from starter.config import Config, ConfigError
from starter.deferrals import DeferralError, GcsDeferrals
from starter.events import BadEvent, Ignored, parse
from starter.logic import decide
from starter.vertex import VertexError, VertexRuns, run_body

log = logging.getLogger("starter")


@cache
def _session(local: bool) -> requests.Session:
    """Application Default Credentials (the function's service account); none against local stand-ins."""
    if local:
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


def handle(headers: dict[str, str], body: bytes, environ: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The whole request: parse, decide, act. Returns (HTTP status, JSON answer)."""
    try:
        config = Config.load(environ)
        event = parse(headers, body, config.sources)
    except (ConfigError, BadEvent) as exc:
        return (500 if isinstance(exc, ConfigError) else 400), {"error": str(exc)}
    if isinstance(event, Ignored):
        return 200, {"action": "ignored", "run": "", "reason": event.reason}
    session = _session(config.local)
    runs = VertexRuns(
        session,
        config.aiplatform_endpoint,
        config.parent,
        config[StarterEnv.PIPELINE_NAME],
        run_body(
            pipeline_name=config[StarterEnv.PIPELINE_NAME],
            template_uri=config[StarterEnv.TEMPLATE_URI],
            account=config[StarterEnv.PIPELINE_ACCOUNT],
            root=config[StarterEnv.PIPELINE_ROOT],
            kms_key=config[StarterEnv.KMS_KEY],
            labels=config.labels,
        ),
    )
    try:
        deferrals = GcsDeferrals.at(session, config[StarterEnv.DEFERRED_URI], dict(environ))
        outcome = decide(event, runs, deferrals, config[StarterEnv.PIPELINE_NAME])
    except (VertexError, DeferralError, requests.RequestException) as exc:
        return 500, {"error": str(exc)}
    return 200, outcome.as_json()


@functions_framework.http
def start(request: flask.Request) -> flask.Response:
    status, answer = handle(dict(request.headers), request.get_data(), dict(os.environ))
    log.warning(json.dumps({"status": status, **answer}))  # one structured line per trigger in Cloud Logging
    return flask.Response(json.dumps(answer), status=status, mimetype="application/json")
