"""The registry: immutable versions, aliases, the quality gate, rollback, and compare-and-swap under concurrency."""

import json
import threading

import pytest

import storage
from trainer import cli
from trainer.models.registry import (
    GateRefused,
    ModelRegistry,
    RegistryError,
    register_external_version,
    register_version,
)


def metrics(accuracy):
    return {"accuracy": accuracy, "macro_precision": accuracy, "macro_recall": accuracy, "macro_f1": accuracy}


def add(registry, accuracy, version=None):
    return registry.register(
        {"metadata.json": b"{}"}, metrics(accuracy), "custom", dataset_version="v-1", version=version
    )


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.85, regression_tolerance=0.005)


def test_register_makes_a_candidate_with_record_and_files(registry):
    version = add(registry, 0.9)
    index = registry.read_index().to_json()
    assert index["aliases"] == {"candidate": version}
    record = index["versions"][version]
    assert record["path"] == f"registry/versions/{version}" and record["source"] == "custom"
    assert record["dataset_version"] == "v-1" and record["created_at"].endswith("Z")
    assert storage.exists(storage.join(registry.version_uri(version), "metadata.json"))
    assert [e["action"] for e in index["events"]] == ["register"]


def test_versions_are_immutable(registry):
    version = add(registry, 0.9, version="v20260101-000000-aaaa")
    with pytest.raises(RegistryError, match="immutable"):
        add(registry, 0.95, version=version)
    assert registry.read_index().to_json()["versions"][version]["metrics"]["accuracy"] == 0.9


def test_gate_refuses_below_the_floor_with_the_numbers(registry):
    version = add(registry, 0.84)
    with pytest.raises(GateRefused, match=r"0\.8400 is below the floor 0\.8500"):
        registry.promote(version)
    assert "champion" not in registry.read_index().to_json()["aliases"]


def test_gate_refuses_a_regression_beyond_the_tolerance(registry):
    first = add(registry, 0.92)
    registry.promote(first)
    within = add(registry, 0.916)
    assert registry.promote(within) == (within, first)
    worse = add(registry, 0.91)
    with pytest.raises(GateRefused, match=rf"0\.9100 is 0\.0060 below champion {within} \(0\.9160\)"):
        registry.promote(worse)
    index = registry.read_index().to_json()
    assert index["aliases"]["champion"] == within and index["history"]["champion"] == [first, within]


def test_rollback_moves_champion_back_and_can_target_an_earlier_one(registry):
    versions = [add(registry, a) for a in (0.90, 0.91, 0.92)]
    for version in versions:
        registry.promote(version)
    assert registry.rollback() == (versions[1], versions[2])
    assert registry.read_index().to_json()["aliases"]["champion"] == versions[1]
    registry.promote(versions[2])
    assert registry.rollback(to=versions[0]) == (versions[0], versions[2])
    assert registry.read_index().to_json()["history"]["champion"] == [versions[0]]
    with pytest.raises(RegistryError, match="first champion"):
        registry.rollback()


def test_unknown_reference_lists_the_aliases(registry):
    add(registry, 0.9)
    with pytest.raises(RegistryError, match="aliases: candidate"):
        registry.promote("nope")


def test_automl_models_register_into_the_same_registry(settings):
    version = register_external_version(
        settings,
        source="automl",
        metrics=metrics(0.93),
        dataset_version="v-1",
        extra={"vertex_model": "projects/p/locations/l/models/1"},
    )
    custom = register_version(settings, {"metadata.json": b"{}"}, metrics(0.92), "custom", dataset_version="v-1")
    registry = ModelRegistry.from_settings(settings)
    index = registry.read_index().to_json()
    assert index["versions"][version]["source"] == "automl"
    assert index["versions"][version]["vertex_model"].endswith("/models/1")
    assert index["aliases"]["candidate"] == custom
    metadata = json.loads(storage.read_text(storage.join(registry.version_uri(version), "metadata.json")))
    assert metadata["source"] == "automl" and metadata["model_version"] == version
    with pytest.raises(RegistryError, match="source must be one of"):
        register_version(settings, {"a": b""}, metrics(0.9), "manual", dataset_version=None)


def concurrent_promotions(registry, monkeypatch, versions):
    """Both promotions read the same index before either writes (a barrier after the first read of each)."""
    barrier = threading.Barrier(len(versions), timeout=20)
    real_read = storage.read_versioned
    first_read = threading.local()

    def read_then_wait(uri):
        result = real_read(uri)
        if uri == registry.index_uri and not getattr(first_read, "done", False):
            first_read.done = True
            barrier.wait()
        return result

    monkeypatch.setattr(storage, "read_versioned", read_then_wait)
    errors = []

    def promote(version):
        try:
            registry.promote(version)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    monkeypatch.setattr(storage, "read_versioned", real_read)
    return errors


def assert_no_lost_update(registry, versions, errors):
    assert errors == []
    index = registry.read_index().to_json()
    assert sorted(index["history"]["champion"]) == sorted(versions), "a concurrent promotion was lost"
    assert index["aliases"]["champion"] == index["history"]["champion"][-1]
    assert [e["action"] for e in index["events"]].count("promote") == 2


def test_two_concurrent_promotions_both_land_locally(registry, monkeypatch):
    versions = [add(registry, 0.90), add(registry, 0.901)]
    assert_no_lost_update(registry, versions, concurrent_promotions(registry, monkeypatch, versions))


def test_two_concurrent_promotions_both_land_on_the_gcs_emulator(gcs_settings, monkeypatch):
    registry = ModelRegistry.from_settings(gcs_settings)
    assert registry.root.startswith("gs://")
    versions = [add(registry, 0.90), add(registry, 0.901)]
    assert_no_lost_update(registry, versions, concurrent_promotions(registry, monkeypatch, versions))


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_list_show_promote_rollback(settings, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    monkeypatch.setenv("FMNIST_ENV", "local")
    assert "no versions registered" in run_cli(capsys, "registry", "list")[1]
    registry = ModelRegistry.from_settings(settings)
    low, first, second = add(registry, 0.5), add(registry, 0.9), add(registry, 0.91)

    rc, _, err = run_cli(capsys, "registry", "promote", low)
    assert rc == 3 and "below the floor" in err  # the gate refusal exit status pipelines test for
    assert run_cli(capsys, "registry", "promote", first)[0] == 0
    rc, out, _ = run_cli(capsys, "registry", "promote")  # default: the candidate
    assert rc == 0 and f"champion is now {second}" in out and f"was {first}" in out
    rc, out, _ = run_cli(capsys, "registry", "list")
    row = next(line for line in out.splitlines() if line.startswith(second))
    assert "0.9100" in row and "candidate,champion" in row
    shown = json.loads(run_cli(capsys, "registry", "show", "champion")[1])
    assert shown["version"] == second and shown["aliases"] == ["candidate", "champion"]
    rc, out, _ = run_cli(capsys, "registry", "rollback")
    assert rc == 0 and f"from {second} to {first}" in out
    assert json.loads(run_cli(capsys, "registry", "list", "--json")[1])["aliases"]["champion"] == first
