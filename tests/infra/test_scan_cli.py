"""`python -m infra.scan` modes that the Makefile uses (`make synth`, `make scan`)."""

from __future__ import annotations

import json
import os

from infra.scan import main as scan_main


def test_synth_only_writes_stacks_and_baseline_without_checkov(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHECKOV", str(tmp_path / "no-checkov-here"))  # --synth-only must not need it
    for name in [n for n in os.environ if n.startswith("FMNIST_")]:
        monkeypatch.delenv(name)
    assert scan_main(["--outdir", str(tmp_path / "out"), "--synth-only"]) == 0
    stacks = sorted(p.parent.name for p in (tmp_path / "out").glob("stacks/*/cdk.tf.json"))
    expected = ["bootstrap-dev", "bootstrap-prod", "dev", "images-dev", "images-prod", "prod", "serving-dev"]
    assert stacks == [*expected, "serving-prod"]
    assert json.loads((tmp_path / "out" / "checkov.baseline").read_text())["failed_checks"]
    assert f"stacks: {', '.join(stacks)} in" in capsys.readouterr().out


def test_no_synth_on_an_empty_directory_says_what_to_run(tmp_path, capsys):
    assert scan_main(["--outdir", str(tmp_path), "--no-synth"]) == 2
    assert "run `python -m infra`" in capsys.readouterr().err
