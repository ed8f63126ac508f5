"""State backends from config, and no path of the synthesizing machine in any output."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from infra.stack import local_state_path

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_gcs_backend_from_config(synth, env, settings_by_env):
    backend = synth.stack(env)["terraform"]["backend"]
    assert backend == {"gcs": {"bucket": settings_by_env[env].infra.state_bucket, "prefix": f"fmnist-mlops/{env}"}}


def test_relative_local_backend_without_state_bucket(variant_synth):
    backend = variant_synth.stack("dev")["terraform"]["backend"]
    assert backend == {"local": {"path": local_state_path("dev")}}
    assert not os.path.isabs(backend["local"]["path"])
    # Terraform runs in cdktf.out/stacks/<env>/: the state lands in the repository root, which .gitignore covers
    assert (REPO_ROOT / "cdktf.out/stacks/dev" / backend["local"]["path"]).resolve().parent == REPO_ROOT
    assert "terraform.*.tfstate*" in (REPO_ROOT / ".gitignore").read_text()


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_bootstrap_stack_keeps_local_state_at_the_repository_root(synth, env):
    backend = synth.stack(f"bootstrap-{env}")["terraform"]["backend"]
    assert backend == {"local": {"path": local_state_path(f"bootstrap-{env}")}}
    assert (REPO_ROOT / f"cdktf.out/stacks/bootstrap-{env}" / backend["local"]["path"]).resolve().parent == REPO_ROOT


def _machine_paths(outdir: Path) -> set[str]:
    paths = {str(REPO_ROOT), str(outdir), str(Path.home()), os.path.realpath(outdir)}
    return {p for p in paths if len(p) > 1}


@pytest.mark.parametrize("fixture", ["synth", "variant_synth"])
def test_no_machine_path_in_any_output(request, fixture):
    result = request.getfixturevalue(fixture)
    files = [p for p in result.outdir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        if path.suffix == ".zip":  # the starter's source archive (a stack asset): its files, unpacked
            with zipfile.ZipFile(path) as archive:
                text = "".join(archive.read(name).decode() for name in archive.namelist())
        else:
            text = path.read_text()
        for machine_path in _machine_paths(result.outdir):
            assert machine_path not in text, f"{path.name} contains {machine_path}"
