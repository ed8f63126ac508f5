"""Where the Google Cloud clients send their requests: Google's endpoints, or a local emulator named in the
environment, as `STORAGE_EMULATOR_HOST` and `BIGQUERY_EMULATOR_HOST` already do for their own clients.

Why here and not in each adapter's arguments: google-cloud-storage and google-cloud-bigquery read their emulator
variable themselves, but aiplatform and the GAPIC clients (Vertex AI admin services, Cloud Monitoring) have no such
variable. The same variables, read in one place, point them at the local twin (`make twin-gcp`, twin/README.md):
the SDKs then run their own validation, defaults and encoding over REST, exactly as against Google. Unset (always, on
Google Cloud), nothing changes: the clients keep their default endpoints, transport and credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

VERTEX_AI = "VERTEX_AI_EMULATOR_HOST"  # e.g. http://127.0.0.1:8089: aiplatform and the aiplatform_v1 clients, REST
# host:port of a gRPC server with TLS (monitoring_v3 has no REST transport); its certificate is trusted through
# gRPC's own GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
MONITORING = "MONITORING_EMULATOR_HOST"
RUN = "RUN_EMULATOR_HOST"  # e.g. http://127.0.0.1:8091: the Cloud Run Admin API v2 (the promoter's jobs), REST
RUN_API = "https://run.googleapis.com/v2"


def run_api(environ: Mapping[str, str] | None = None) -> str:
    """The Cloud Run Admin API v2 base URL: Google's, or the emulator's (`RUN_EMULATOR_HOST`)."""
    local = emulator(RUN, environ)
    return f"{local}/v2" if local else RUN_API


def emulator(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The emulator's base URL (`http://host:port`), or '' for Google's endpoint."""
    value = (os.environ if environ is None else environ).get(variable, "").strip().rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        value = f"http://{value}"  # the emulator convention: a bare host:port
    return value


def gapic_client_kwargs(api_endpoint: str, environ=None) -> dict[str, Any]:
    """Keyword arguments of a Vertex AI GAPIC client (e.g. aiplatform_v1.ModelServiceClient): Google's regional
    endpoint over the default transport (gRPC), or the emulator over REST."""
    local = emulator(VERTEX_AI, environ)
    if not local:
        return {"client_options": {"api_endpoint": api_endpoint}}
    return {"client_options": {"api_endpoint": local}, "transport": "rest"}


def monitoring_client_kwargs(environ=None) -> dict[str, Any]:
    """Keyword arguments of monitoring_v3.MetricServiceClient: none (Google's endpoint), or the emulator's
    host:port, still over gRPC with TLS and the same credentials."""
    local = (os.environ if environ is None else environ).get(MONITORING, "").strip()
    return {"client_options": {"api_endpoint": local}} if local else {}


def configure_vertex_sdk(environ=None, aiplatform=None) -> bool:
    """Point aiplatform's global configuration at the Vertex AI emulator, if one is named: every later
    `aiplatform.init(project=..., location=...)` keeps the endpoint and the REST transport. True when it did."""
    local = emulator(VERTEX_AI, environ)
    if not local:
        return False
    if aiplatform is None:
        from google.cloud import aiplatform
    aiplatform.init(api_endpoint=local, api_transport="rest")
    return True
