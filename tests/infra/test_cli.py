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
    pytest.mark.skipif(not CDKTF.is_file(), reason="cdktf CLI not installed: run `npm ci` at the repository root"),
]


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")}
    environ.update(CHECKPOINT_DISABLE="1", JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CI="1")
    completed = subprocess.run([str(CDKTF), *args], cwd=REPO_ROOT, env=environ, capture_output=True, text=True,
                               timeout=180)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return completed


def test_cdktf_synth_matches_the_in_process_synth(synth, tmp_path):
    _run_cli("synth", "--output", str(tmp_path))
    for env, text in synth.texts.items():
        assert (tmp_path / "stacks" / env / "cdk.tf.json").read_text() == text, env
    assert sorted(p.name for p in (tmp_path / "stacks").iterdir()) == sorted(synth.texts)


def test_cdktf_synth_hcl_is_the_exit_path(tmp_path):
    _run_cli("synth", "--hcl", "--output", str(tmp_path))
    for env in ("dev", "prod"):
        hcl = (tmp_path / "stacks" / env / "cdk.tf").read_text()
        assert 'source  = "hashicorp/google"' in hcl
        assert 'backend "gcs"' in hcl and f'prefix = "fmnist-mlops/{env}"' in hcl
        assert 'resource "google_cloud_run_v2_service"' in hcl
        assert str(REPO_ROOT) not in hcl and str(tmp_path) not in hcl
