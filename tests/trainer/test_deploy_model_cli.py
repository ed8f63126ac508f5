"""`trainer deploy-model` as a user runs it: the canary's checks before anything is read or sent, the digest
check of the bytes it would upload, and a canary deployed through the real SDK to the local Vertex AI fake with
the registry on the GCS emulator, recorded in the registry's event log."""

from __future__ import annotations

import hashlib
import json

import pytest

import storage
from tests.vertex_fake import vertex_over_the_wire
from trainer import cli
from trainer.models.registry import ModelRegistry


def _register(registry, content: bytes, accuracy: float) -> str:
    """A version whose record holds its file's digest, as export registers them."""
    files = {"metadata.json": hashlib.sha256(content).hexdigest()}
    return registry.register(
        {"metadata.json": content}, {"accuracy": accuracy}, "custom", dataset_version="v-1", extra={"files": files}
    )


@pytest.fixture
def versions(settings, monkeypatch):
    """A champion and a candidate in the local registry; the CLI reads the same storage root."""
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    registry = ModelRegistry.from_settings(settings)
    champion = _register(registry, b'{"a": 1}', 0.9)
    registry.promote(champion)
    candidate = _register(registry, b'{"b": 2}', 0.91)
    return registry, champion, candidate


def test_a_version_without_digests_is_deployed_with_a_note(settings, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    registry = ModelRegistry.from_settings(settings)
    version = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="v-1")
    assert cli.main(["deploy-model", "candidate", "--dry-run"]) == 0
    assert capsys.readouterr().err == (
        f"note: {version} was registered without file digests; its files are not verified\n"
    )


def test_a_canary_of_the_champion_is_refused_with_the_command_to_run(versions, capsys):
    _, champion, _ = versions
    assert cli.main(["deploy-model", "champion", "--canary", "10", "--dry-run"]) != 0
    assert capsys.readouterr().err.strip() == (
        f"error: {champion} is the champion: a canary deploys a challenger beside it "
        "(e.g. `deploy-model candidate --canary 10`)"
    )


@pytest.mark.parametrize("share", [0, 100, -5])
def test_a_canary_share_outside_1_to_99_is_refused(versions, share, capsys):
    assert cli.main(["deploy-model", "candidate", f"--canary={share}", "--dry-run"]) != 0
    assert capsys.readouterr().err.strip() == (
        f"error: --canary must be 1-99 (the champion keeps the rest), got {share}"
    )


@pytest.mark.parametrize("share", [1, 99])
def test_a_canary_share_becomes_the_deployed_traffic(versions, share, capsys):
    _, _, candidate = versions
    assert cli.main(["deploy-model", "candidate", "--canary", str(share), "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["deploy"]["traffic_percentage"] == share
    assert candidate in printed["upload"]["version_aliases"]


def test_a_changed_file_stops_the_deploy_before_anything_is_uploaded(versions, capsys):
    registry, _, candidate = versions
    changed = storage.join(registry.version_uri(candidate), "metadata.json")
    storage.write_bytes(changed, b'{"b": 3}')
    assert cli.main(["deploy-model", "candidate", "--dry-run"]) != 0
    error = capsys.readouterr().err
    assert f"{changed} was changed or damaged" in error and "Nothing was loaded" in error


def test_a_canary_over_the_wire_is_deployed_beside_the_champion_and_recorded(gcs_settings, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    registry = ModelRegistry.from_settings(gcs_settings)
    champion = _register(registry, b"{}", 0.9)
    registry.promote(champion)
    candidate = _register(registry, b"{ }", 0.91)
    endpoint = gcs_settings.names.endpoint_name
    with vertex_over_the_wire(gcs_settings.project_id, gcs_settings.region) as fake:
        fake.seed_endpoint(endpoint, {"111": f"fmnist-{champion}"}, {"111": 100})
        assert cli.main(["--env", "dev", "deploy-model", "candidate", "--canary", "10"]) == 0
    [uploaded] = [name for name in fake.resources if "/models/" in name and "@" not in name]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"uploaded {candidate} as {uploaded}@") and line.endswith(
        f" and deployed it to {endpoint} with 10% of the traffic"
    )
    split = fake.resources[endpoint]["trafficSplit"]
    assert split["111"] == 90 and sorted(split.values()) == [10, 90]
    last = registry.read_index().events[-1]
    assert (last["action"], last["version"], last["target"], last["traffic_percentage"]) == (
        "canary-started",
        candidate,
        "vertex",
        10,
    )


def _vertex_state(fake, endpoint: str) -> dict:
    """What a retried deploy must leave as it was: the model versions (by name) and what the endpoint serves."""
    served = fake.resources[endpoint]
    return {
        "models": sorted(name for name in fake.resources if "/models/" in name),
        "deployed": sorted(d["displayName"] for d in served.get("deployedModels", [])),
        "traffic": served.get("trafficSplit"),
    }


def test_a_retried_deploy_uploads_and_deploys_nothing_more(gcs_settings, monkeypatch, capsys):
    """Vertex AI Pipelines may retry the deploy-model step: the second run finds the version it uploaded (by its
    version alias) and the endpoint already serving it with the share asked, so nothing is uploaded or deployed."""
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    registry = ModelRegistry.from_settings(gcs_settings)
    champion = _register(registry, b"{}", 0.9)
    registry.promote(champion)
    endpoint = gcs_settings.names.endpoint_name
    with vertex_over_the_wire(gcs_settings.project_id, gcs_settings.region) as fake:
        fake.seed_endpoint(endpoint, {}, {})
        assert cli.main(["--env", "dev", "deploy-model", "champion"]) == 0
        first = _vertex_state(fake, endpoint)
        capsys.readouterr()
        assert cli.main(["--env", "dev", "deploy-model", "champion"]) == 0
        second = _vertex_state(fake, endpoint)
    assert capsys.readouterr().err == (
        f"note: {champion} was uploaded by an earlier attempt; not uploaded again\n"
        f"note: {champion} already serves 100% of the traffic; not deployed again\n"
    )
    assert first["deployed"] == [f"fmnist-{champion}"] and sorted(first["traffic"].values()) == [100]
    assert second == first
    assert [r.verb for r in fake.requests if r.verb in ("upload", "deployModel")] == ["upload", "deployModel"]
