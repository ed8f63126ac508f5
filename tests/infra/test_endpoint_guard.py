"""`python -m infra.endpoint_guard`: destroy refuses while models are deployed, with the command that fixes it."""

from __future__ import annotations

import pytest

from infra.endpoint_guard import endpoint_url, judge, main
from settings import load_config


@pytest.fixture(scope="module")
def names():
    return load_config("dev", environ={}).names


def test_the_request_names_the_declared_endpoint(names):
    assert endpoint_url(names) == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/fmnist-mlops-dev/locations/europe-west4/endpoints/1001"
    )


def test_deployed_models_block_the_destroy(names):
    verdict = judge(names, 200, {"deployedModels": [{"id": "42", "model": "projects/p/models/fmnist-classifier"}]})
    assert not verdict.may_destroy
    assert "1 model(s) still deployed" in verdict.message and "42" in verdict.message
    assert "python -m trainer --env dev undeploy-all --yes" in verdict.message


@pytest.mark.parametrize(
    "status, body, may",
    [
        (200, {}, True),
        (200, {"deployedModels": []}, True),
        (404, {}, True),
        (403, {"error": {"message": "denied"}}, False),
    ],
)
def test_the_verdict(names, status, body, may):
    assert judge(names, status, body).may_destroy is may


def test_an_unreadable_endpoint_refuses(names):
    assert "HTTP 403: denied" in judge(names, 403, {"error": {"message": "denied"}}).message


def test_the_cli_exit_status(capsys):
    def deployed(url):
        return 200, {"deployedModels": [{"id": "7"}]}

    assert main(["dev"], fetch=deployed) == 1
    assert "refusing to destroy dev" in capsys.readouterr().err
    assert main(["dev"], fetch=lambda url: (404, {})) == 0


@pytest.mark.gcp
def test_the_real_endpoint_answers():
    pytest.importorskip("google.auth")
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        pytest.skip("no Google Cloud credentials (application default credentials) on this machine")
    from infra.endpoint_guard import fetch_endpoint

    status, _ = fetch_endpoint(endpoint_url(load_config("dev").names))
    assert status in (200, 404)
