"""Publishing the compiled templates: kfp's own RegistryClient builds the upload request (run in the kfp venv), and
only the HTTP transport is replaced, so the test sees the multipart POST Artifact Registry would receive."""

import json
import subprocess

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
