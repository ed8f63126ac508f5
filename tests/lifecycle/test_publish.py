"""Publishing the compiled templates: kfp's own RegistryClient builds the upload request (run in the kfp venv), and
only the HTTP transport is replaced, so the test sees the multipart POST Artifact Registry would receive."""

import json
import subprocess

import pytest

from settings import load_config
from tests.lifecycle.test_pipeline import KFP_PYTHON, REPO, compile_env, needs_kfp

# Runs in the kfp venv: every request kfp sends is answered 200 by the transport and printed as JSON.
UPLOAD = r"""
import json, sys
from pathlib import Path
import requests
from kfp.registry import ApiAuth
from lifecycle.orchestration.publish import publish
from settings import load_config

sent = []

def send(adapter, request, **kwargs):
    boundary = request.headers["Content-Type"].split("boundary=")[1].encode()
    parts = {}
    for part in request.body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        parts[name] = content[:-2].decode()
    sent.append({"method": request.method, "url": request.url, "auth": request.headers.get("authorization"),
                 "parts": parts})
    response = requests.Response()
    response.status_code, response._content = 200, b"fmnist-lifecycle/sha256:0123"
    return response

requests.adapters.HTTPAdapter.send = send
templates = [Path(p) for p in sys.argv[2:]]
publish(load_config("dev").names, templates, sys.argv[1], auth=ApiAuth("token-1"))
print(json.dumps(sent))
"""


@needs_kfp
def test_both_templates_go_to_the_kfp_repository_tagged_latest_and_the_commit(tmp_path):
    lifecycle, prediction = tmp_path / "fmnist-lifecycle.yaml", tmp_path / "fmnist-batch-prediction.yaml"
    compile_env("dev", lifecycle)
    compile_env("dev", prediction, "--pipeline", "prediction")
    result = subprocess.run(
        [str(KFP_PYTHON), "-c", UPLOAD, "3f2a9c1", str(lifecycle), str(prediction)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sent = json.loads(result.stdout.splitlines()[-1])
    names = load_config("dev").names
    host = f"https://europe-west4-kfp.pkg.dev/{names.project}/{names.pipeline_repository}"
    assert names.pipeline_template_uri == f"{host}/fmnist-lifecycle/latest"  # where the starter starts runs from
    assert [(r["method"], r["url"], r["auth"]) for r in sent] == [("POST", host, "Bearer token-1")] * 2
    assert [r["parts"]["tags"] for r in sent] == ["latest,3f2a9c1"] * 2
    assert [r["parts"]["content"] for r in sent] == [lifecycle.read_text(), prediction.read_text()]


def test_publish_refuses_a_missing_template_and_a_local_environment(tmp_path, capsys):
    from lifecycle.orchestration.publish import main

    assert main(["--env", "local", "--tag", "abc"]) == 1
    assert "local environment: templates go to a gcp one" in capsys.readouterr().err
    assert main(["--env", "dev", "--tag", "abc", str(tmp_path / "none.yaml")]) == 1
    assert "missing: compile them first with `make pipeline ENV=dev`" in capsys.readouterr().err
    assert main(["--env", "dev", "--tag", "latest", str(tmp_path / "none.yaml")]) == 1
    assert "give the commit" in capsys.readouterr().err


# `python -m lifecycle publish` as Cloud Build runs it, in the kfp venv: Application Default Credentials (replaced by
# a token credential, as on a build worker), kfp's RegistryClient, the HTTP transport replaced as above.
MAIN = (
    UPLOAD.split("templates = [")[0]
    + r"""
import google.auth
from google.oauth2.credentials import Credentials

google.auth.default = lambda *args, **kwargs: (Credentials(token="adc-token"), "project")
from lifecycle.orchestration.publish import main

code = main(sys.argv[1:])
print(json.dumps(sent))
sys.exit(code)
"""
)


@needs_kfp
def test_the_command_uploads_with_application_default_credentials_and_says_where_each_went(tmp_path):
    first, second = tmp_path / "one.yaml", tmp_path / "two.yaml"
    first.write_text("first: 1\n")
    second.write_text("second: 2\n")
    result = subprocess.run(
        [str(KFP_PYTHON), "-c", MAIN, "--env", "dev", "--tag", "v1.2_rc-3", str(first), str(second)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *printed, requests_json = result.stdout.splitlines()
    names = load_config("dev").names
    host = f"https://europe-west4-kfp.pkg.dev/{names.project}/{names.pipeline_repository}"
    assert printed == [
        f"published {first} as {host}/fmnist-lifecycle sha256:0123 (latest, v1.2_rc-3)",
        f"published {second} as {host}/fmnist-lifecycle sha256:0123 (latest, v1.2_rc-3)",
    ]
    sent = json.loads(requests_json)
    assert [(r["url"], r["auth"], r["parts"]["tags"]) for r in sent] == [
        (host, "Bearer adc-token", "latest,v1.2_rc-3")
    ] * 2
    assert [r["parts"]["content"] for r in sent] == ["first: 1\n", "second: 2\n"]


def test_publish_names_both_default_templates_when_they_are_not_compiled(tmp_path, monkeypatch, capsys):
    from lifecycle.orchestration.publish import main

    monkeypatch.chdir(tmp_path)
    assert main(["--env", "dev", "--tag", "abc"]) == 1
    assert capsys.readouterr().err == (
        "error: build/fmnist-lifecycle.yaml, build/fmnist-batch-prediction.yaml missing: compile them first with "
        "`make pipeline ENV=dev`\n"
    )


@pytest.mark.parametrize("tag", ["", "-lead", "a b", "x" * 129, "latest", "a/b"])
def test_a_tag_that_is_not_a_commit_name_is_refused_before_anything_is_read(tag, tmp_path):
    from lifecycle.orchestration.publish import publish

    with pytest.raises(ValueError) as caught:
        publish(load_config("dev").names, [tmp_path / "missing.yaml"], tag)
    assert str(caught.value) == f"--tag {tag!r}: give the commit (letters, digits, '.', '_', '-'), not 'latest'"


def test_the_longest_tag_and_every_allowed_character_pass_the_check(tmp_path):
    from lifecycle.orchestration.publish import publish

    for tag in ("a" * 128, "A0._-z", "0"):
        with pytest.raises(ValueError, match="missing: compile them first"):  # past the tag: the files are next
            publish(load_config("dev").names, [tmp_path / "missing.yaml"], tag)


def test_the_command_s_usage_names_it_as_run_and_says_what_it_does(capsys):
    from lifecycle.orchestration.publish import main

    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert text.startswith("usage: python -m lifecycle publish [-h] --env ENV --tag TAG")
    assert "`python -m lifecycle publish --env ENV --tag COMMIT`: upload the compiled templates to the KFP" in text


@needs_kfp
def test_a_credential_given_to_publish_is_the_one_sent(tmp_path):
    template = tmp_path / "one.yaml"
    template.write_text("one: 1\n")
    result = subprocess.run(
        [str(KFP_PYTHON), "-c", UPLOAD, "abc", str(template)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [sent] = json.loads(result.stdout.splitlines()[-1])
    assert (sent["auth"], sent["parts"]["tags"], sent["parts"]["content"]) == (
        "Bearer token-1",
        "latest,abc",
        "one: 1\n",
    )
