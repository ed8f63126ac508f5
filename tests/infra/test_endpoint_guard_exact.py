"""The destroy's endpoint check (infra/endpoint_guard.py), message by message and stream by stream: the verdict a
user reads for each answer of the endpoint's GET, the exit status `make destroy` acts on, and an unknown
environment refused with status 2 before any request."""

from __future__ import annotations

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
