"""Where the Google Cloud clients send their requests (trainer/cloud/endpoints.py), value by value: the emulator's
URL as the twin's variables spell it (bare host:port, a scheme, spaces, a trailing slash), Google's endpoints when
they are unset, and the keyword arguments each client is built with. A wrong value here sends a command to Google
instead of the twin (or the reverse), which the wire tests only see for the one spelling they use."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trainer.cloud import endpoints
from trainer.cloud.endpoints import (
    configure_vertex_sdk,
    emulator,
    gapic_client_kwargs,
    monitoring_client_kwargs,
    run_api,
)


@pytest.mark.parametrize(
    "value, url",
    [
        ("127.0.0.1:8089", "http://127.0.0.1:8089"),  # the emulator convention: a bare host:port
        (" 127.0.0.1:8089/ ", "http://127.0.0.1:8089"),
        ("http://twin:8089/", "http://twin:8089"),
        ("https://twin.example:443", "https://twin.example:443"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_the_emulator_url_from_its_variable(value, url):
    assert emulator(endpoints.VERTEX_AI, {endpoints.VERTEX_AI: value}) == url


def test_an_unset_variable_means_googles_endpoint_and_the_process_environment_is_read_by_default(monkeypatch):
    assert emulator(endpoints.VERTEX_AI, {}) == ""
    monkeypatch.setenv(endpoints.VERTEX_AI, "localhost:9")
    assert emulator(endpoints.VERTEX_AI) == "http://localhost:9"
    assert emulator(endpoints.VERTEX_AI, {}) == ""  # an explicit environment wins over the process's
    monkeypatch.delenv(endpoints.VERTEX_AI)
    assert emulator(endpoints.VERTEX_AI) == ""


def test_the_variables_names_are_the_ones_the_twin_sets():
    assert (endpoints.VERTEX_AI, endpoints.MONITORING, endpoints.RUN) == (
        "VERTEX_AI_EMULATOR_HOST",
        "MONITORING_EMULATOR_HOST",
        "RUN_EMULATOR_HOST",
    )


def test_the_cloud_run_admin_api_is_googles_v2_or_the_emulators(monkeypatch):
    assert run_api({}) == "https://run.googleapis.com/v2"
    assert run_api({endpoints.RUN: "127.0.0.1:8091/"}) == "http://127.0.0.1:8091/v2"
    assert run_api({endpoints.VERTEX_AI: "127.0.0.1:8089"}) == "https://run.googleapis.com/v2"  # its own variable
    monkeypatch.setenv(endpoints.RUN, "http://run-twin:1")
    assert run_api() == "http://run-twin:1/v2"


def test_a_gapic_client_goes_to_the_regional_endpoint_over_grpc_or_to_the_emulator_over_rest(monkeypatch):
    regional = "europe-west4-aiplatform.googleapis.com"
    assert gapic_client_kwargs(regional, {}) == {"client_options": {"api_endpoint": regional}}
    assert gapic_client_kwargs(regional, {endpoints.VERTEX_AI: "127.0.0.1:8089"}) == {
        "client_options": {"api_endpoint": "http://127.0.0.1:8089"},
        "transport": "rest",
    }
    monkeypatch.setenv(endpoints.VERTEX_AI, "127.0.0.1:1")
    assert gapic_client_kwargs(regional)["client_options"] == {"api_endpoint": "http://127.0.0.1:1"}


def test_a_real_gapic_client_built_with_them_talks_rest_to_the_emulator():
    """The kwargs as aiplatform_v1 takes them: a REST transport whose host is the emulator's URL."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1

    kwargs = gapic_client_kwargs("europe-west4-aiplatform.googleapis.com", {endpoints.VERTEX_AI: "127.0.0.1:8089"})
    client = aiplatform_v1.ModelServiceClient(credentials=AnonymousCredentials(), **kwargs)
    assert type(client.transport).__name__ == "ModelServiceRestTransport"
    assert client.transport._host == "http://127.0.0.1:8089"


def test_the_monitoring_client_keeps_googles_endpoint_or_takes_the_emulators_host_port_as_given(monkeypatch):
    """gRPC with TLS either way: the host:port is not turned into a URL."""
    assert monitoring_client_kwargs({}) == {}
    assert monitoring_client_kwargs({endpoints.MONITORING: "   "}) == {}
    assert monitoring_client_kwargs({endpoints.MONITORING: " twin:8443 "}) == {
        "client_options": {"api_endpoint": "twin:8443"}
    }
    monkeypatch.setenv(endpoints.MONITORING, "127.0.0.1:8443")
    assert monitoring_client_kwargs() == {"client_options": {"api_endpoint": "127.0.0.1:8443"}}
    monkeypatch.delenv(endpoints.MONITORING)
    assert monitoring_client_kwargs() == {}


def test_the_vertex_sdk_is_pointed_at_the_emulator_only_when_one_is_named(monkeypatch):
    calls: list[dict] = []
    sdk = SimpleNamespace(init=lambda **kwargs: calls.append(kwargs))
    assert configure_vertex_sdk({}, aiplatform=sdk) is False
    assert calls == []
    assert configure_vertex_sdk({endpoints.VERTEX_AI: "127.0.0.1:8089/"}, aiplatform=sdk) is True
    assert calls == [{"api_endpoint": "http://127.0.0.1:8089", "api_transport": "rest"}]
    monkeypatch.delenv(endpoints.VERTEX_AI, raising=False)
    assert configure_vertex_sdk(aiplatform=sdk) is False and len(calls) == 1
