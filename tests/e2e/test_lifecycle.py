"""The main job end to end on a small generated dataset: the same `python -m lifecycle` that `make demo` runs,
with the smoke preset, the real service under gunicorn, the real synth and checkov scan."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_idx_dir

REPO = Path(__file__).resolve().parents[2]


def run_lifecycle(tmp_path, *args, **env):
    environ = {**os.environ, "FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"),
               "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3", **env}
    return subprocess.run([sys.executable, "-m", "lifecycle", "--preset", "smoke", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_lifecycle_twice_then_a_failure(tmp_path):
    source = make_idx_dir(tmp_path / "idx", n_train=1000, n_test=300)
    first = run_lifecycle(tmp_path, "--source", str(source), "--infra-outdir", str(tmp_path / "cdktf.out"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "promoted to champion" in out
    assert "checkov" in out and " 0 failed" in out
    assert "HTTP accuracy, JSON / binary" in out
    report = tmp_path / "mlops" / "dev" / "reports" / "latest" / "report.html"
    page = report.read_text()
    assert "data:image/png;base64," in page and "confusion matrix" in page and "<table id=\"summary\">" in page
    index = json.loads((tmp_path / "mlops" / "models" / "registry" / "index.json").read_text())
    assert len(index["versions"]) == 1

    second = run_lifecycle(tmp_path, "--source", str(source), "--skip-infra")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "nothing to do" in second.stdout  # the same dataset version is reused
    index = json.loads((tmp_path / "mlops" / "models" / "registry" / "index.json").read_text())
    assert len(index["versions"]) == 2  # the second model is a new version; the gate decided on it
    assert ("promoted to champion" in second.stdout) or ("refused by the quality gate" in second.stdout)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    third = run_lifecycle(tmp_path, "--source", str(broken), "--skip-infra")
    assert third.returncode == 1
    assert "lifecycle stopped: step 'ingest + validate' failed" in third.stderr
    assert len(json.loads((tmp_path / "mlops" / "models" / "registry" / "index.json").read_text())["versions"]) == 2
