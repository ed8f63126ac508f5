"""The real cdktf CLI runs what cdktf.json says and writes the same stacks as the in-process synth."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CDKTF = REPO_ROOT / "node_modules" / ".bin" / "cdktf"

pytestmark = [
    pytest.mark.cli,
    pytest.mark.slow,  # two real `cdktf synth` runs (node and the app's synth): ~22 s, dealt first under -n 2
    pytest.mark.skipif(not CDKTF.is_file(), reason="cdktf CLI not installed: run `npm ci` at the repository root"),
]


@pytest.fixture(scope="module")
def cli_outputs(tmp_path_factory) -> dict[str, Path]:
    """`cdktf synth` and `cdktf synth --hcl`, started together (each spends much of its time waiting on node)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
    environ.update(CHECKPOINT_DISABLE="1", JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CI="1")
    outputs = {"json": tmp_path_factory.mktemp("cli-json"), "hcl": tmp_path_factory.mktemp("cli-hcl")}
    commands = {
        "json": ["synth", "--output", str(outputs["json"])],
        "hcl": ["synth", "--hcl", "--output", str(outputs["hcl"])],
    }
    running = {
        kind: subprocess.Popen(
            [str(CDKTF), *args], cwd=REPO_ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for kind, args in commands.items()
    }
    for kind, process in running.items():
        output, _ = process.communicate(timeout=180)
        assert process.returncode == 0, f"cdktf {' '.join(commands[kind])}:\n{output[-3000:]}"
    return outputs


def test_cdktf_synth_matches_the_in_process_synth(synth, cli_outputs):
    stacks = cli_outputs["json"] / "stacks"
    assert sorted(p.name for p in stacks.iterdir()) == sorted(synth.texts)
    for env, text in synth.texts.items():
        assert (stacks / env / "cdk.tf.json").read_text() == text, env


def test_cdktf_synth_hcl_is_the_exit_path(cli_outputs):
    for env in ("dev", "prod"):
        hcl = (cli_outputs["hcl"] / "stacks" / env / "cdk.tf").read_text()
        assert 'source  = "hashicorp/google"' in hcl
        assert 'backend "gcs"' in hcl and f'prefix = "fmnist-mlops/{env}"' in hcl
        assert 'resource "google_bigquery_table"' in hcl and 'provider "docker"' not in hcl
        serving = (cli_outputs["hcl"] / "stacks" / f"serving-{env}" / "cdk.tf").read_text()
        assert 'resource "google_cloud_run_v2_service"' in serving and 'data "terraform_remote_state"' in serving
        for text in (hcl, serving):
            assert str(REPO_ROOT) not in text and str(cli_outputs["hcl"]) not in text


def test_the_cli_refuses_to_destroy_an_environment_before_its_images_stack_unless_told(cli_outputs):
    """`images-<env>` depends on `<env>` and is never destroyed (issue 23, defect 7): the real cdktf CLI refuses a
    bare `cdktf destroy <env>` before any Terraform call, so both destroy paths pass the flag it names."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
    environ.update(CHECKPOINT_DISABLE="1", JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CI="1")
    command = [str(CDKTF), "destroy", "dev", "--skip-synth", "--output", str(cli_outputs["json"]), "--auto-approve"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "dependant stacks are not included in the stacks to run: images-dev" in output, output[-2000:]
    flag = "--ignore-missing-stack-dependencies"
    assert flag in output
    for path in ("Makefile", "cloudbuild-deploy.yaml"):
        assert flag in (REPO_ROOT / path).read_text(), path
