"""The registry's quality gate under forced interleavings and at its exact boundaries, locally and on the GCS
emulator (real generation preconditions). Each interleaving is forced, so every test has one right outcome."""

import sys

import pytest

import storage
from settings import load_config
from trainer.models import registry as registry_module
from trainer.models.registry import GateRefused, ModelRegistry, RegistryError


def metrics(accuracy):
    return {"accuracy": accuracy, "macro_precision": accuracy, "macro_recall": accuracy, "macro_f1": accuracy}


def add(registry, accuracy, version=None):
    return registry.register(
        {"metadata.json": b"{}"}, metrics(accuracy), "custom", dataset_version="v-1", version=version
    )


@pytest.fixture(params=["local", "gcs"])
def registry(request, tmp_path):
    root = str(tmp_path / "models") if request.param == "local" else request.getfixturevalue("gcs_bucket")
    return ModelRegistry(root, accuracy_floor=0.85, regression_tolerance=0.005)


class Interleaving:
    """Runs another writer's whole change just before this writer's next index write (after its read), and
    records how each index write ended: 'ok' or 'stale' (lost the compare-and-swap)."""

    def __init__(self, registry, monkeypatch):
        self.registry, self.pending, self.writes, self.inside = registry, [], [], False
        real = storage.write_if_unchanged

        def write(uri, data, token, **kwargs):
            if uri == registry.index_uri and self.pending and not self.inside:
                self.inside = True  # the other writer's own write goes straight through
                try:
                    self.pending.pop(0)()
                finally:
                    self.inside = False
            try:
                real(uri, data, token, **kwargs)
            except storage.PreconditionFailed:
                self.writes.append("stale")
                raise
            self.writes.append("ok")

        monkeypatch.setattr(storage, "write_if_unchanged", write)
        monkeypatch.setattr(registry_module.time, "sleep", lambda seconds: None)

    def before_next_write(self, *changes):
        self.pending.extend(changes)


def test_the_strong_candidate_commits_first_and_the_weak_one_is_refused_on_its_retry(registry, monkeypatch):
    strong, weak = add(registry, 0.95), add(registry, 0.90)
    race = Interleaving(registry, monkeypatch)
    race.before_next_write(lambda: registry.promote(strong))
    with pytest.raises(GateRefused, match=rf"0\.9000 is 0\.0500 below champion {strong} \(0\.9500\)"):
        registry.promote(weak)  # it read "no champion", passed the gate, then lost the write to strong
    assert race.writes == ["ok", "stale"]  # strong's write, weak's stale one; its retry re-checked and wrote nothing
    index = registry.read_index().to_json()
    assert index["aliases"]["champion"] == strong and index["history"]["champion"] == [strong]
    assert [e["action"] for e in index["events"]].count("promote") == 1


def test_the_weak_candidate_commits_first_and_the_strong_one_follows_on_its_retry(registry, monkeypatch):
    strong, weak = add(registry, 0.95), add(registry, 0.90)
    race = Interleaving(registry, monkeypatch)
    race.before_next_write(lambda: registry.promote(weak))
    assert registry.promote(strong) == (strong, weak)  # the previous champion is the one it now sees
    assert race.writes == ["ok", "stale", "ok"]
    index = registry.read_index().to_json()
    assert index["aliases"]["champion"] == strong and index["history"]["champion"] == [weak, strong]


def test_a_registration_that_loses_the_race_lands_on_its_retry(registry, monkeypatch):
    race = Interleaving(registry, monkeypatch)
    other = []
    race.before_next_write(lambda: other.append(add(registry, 0.91)))
    mine = add(registry, 0.92)
    assert race.writes == ["ok", "stale", "ok"]
    index = registry.read_index().to_json()
    assert set(index["versions"]) == {mine, *other} and index["aliases"]["candidate"] == mine


def test_a_change_that_keeps_losing_gives_up_and_writes_nothing(tmp_path, monkeypatch):
    registry = ModelRegistry(str(tmp_path / "models"), max_attempts=3)
    first = add(registry, 0.9)
    sleeps = []
    race = Interleaving(registry, monkeypatch)
    monkeypatch.setattr(registry_module.time, "sleep", sleeps.append)
    monkeypatch.setattr(registry_module.random, "uniform", lambda low, high: high)
    race.before_next_write(*[lambda: add(registry, 0.8) for _ in range(3)])
    with pytest.raises(RegistryError, match="changed 3 times while this change was applied; nothing was written"):
        registry.promote(first)
    assert race.writes == ["ok", "stale"] * 3
    assert sleeps == pytest.approx([0.05, 0.10, 0.15])  # backoff grows with each lost attempt
    assert "champion" not in registry.read_index().to_json()["aliases"]


# ---- the gate's boundaries -------------------------------------------------------------------------------------


def test_accuracy_exactly_at_the_floor_passes_and_one_image_below_does_not(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.85)
    below = add(registry, 8499 / 10000)
    with pytest.raises(GateRefused, match=r"0\.8499 is below the floor 0\.8500"):
        registry.promote(below)
    at_floor = add(registry, 8500 / 10000)
    assert registry.promote(at_floor) == (at_floor, None)


@pytest.mark.parametrize(
    ("champion", "tolerance"),
    [(0.9200, 0.005), (0.5006, 0.005), (0.9186, 0.01)],
    ids=["0.92 - 0.005", "0.5006 - 0.005 (float subtraction lands above)", "0.9186 - 0.01"],
)
def test_exactly_the_tolerance_below_the_champion_passes_and_one_image_more_does_not(tmp_path, champion, tolerance):
    registry = ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.3, regression_tolerance=tolerance)
    first = add(registry, champion)
    registry.promote(first)
    at_limit = round((champion - tolerance) * 10000) / 10000
    beyond = round(at_limit * 10000 - 1) / 10000
    refused = add(registry, beyond)
    with pytest.raises(GateRefused, match=rf"{beyond:.4f} is {champion - beyond:.4f} below champion {first}"):
        registry.promote(refused)
    passed = add(registry, at_limit)
    assert registry.promote(passed) == (passed, first)


def test_a_version_without_accuracy_and_the_champion_itself_are_refused(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"))
    blind = registry.register({"metadata.json": b"{}"}, {}, "custom", dataset_version=None)
    with pytest.raises(GateRefused, match="has no accuracy metric"):
        registry.promote(blind)
    champion = add(registry, 0.9)
    registry.promote(champion)
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(champion)
    assert registry.read_index().to_json()["history"]["champion"] == [champion]


# ---- what `registry list` prints and what an external version's directory holds ----------------------------------


def test_the_registry_table_in_full_including_a_version_without_metrics():
    import json

    from contracts.registry_index import parse_index
    from trainer.models.registry import format_table

    index = {
        "versions": {
            "v2": {
                "source": "custom",
                "metrics": {"accuracy": 0.91234, "macro_precision": 0.9},
                "dataset_version": "v-abc",
                "created_at": "2026-01-01T00:00:00Z",
            },
            "v1": {"metrics": {}, "dataset_version": None},
        },
        "aliases": {"champion": "v2", "candidate": "v2", "old": "v1"},
    }
    assert format_table(parse_index(json.dumps(index), "index.json")).splitlines() == [
        "version                 source   accuracy  macro P  dataset         created               aliases",
        "v1                      ?               -        -  None                                  old",
        "v2                      custom     0.9123   0.9000  v-abc           2026-01-01T00:00:00Z  candidate,champion",
    ]


def test_registry_list_shows_a_version_registered_without_accuracy(tmp_path, monkeypatch, capsys):
    from trainer import cli

    monkeypatch.setenv("FMNIST_ENV", "local")
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])

    registry = ModelRegistry.from_settings(load_config())
    blind = registry.register({"metadata.json": b"{}"}, {}, "custom", dataset_version=None)
    assert cli.main(["registry", "list"]) == 0
    assert f"{blind}" in capsys.readouterr().out


def test_an_external_version_holds_its_metadata_and_its_record(settings):
    import json

    from trainer.models.registry import register_external_version

    extra = {"vertex_model": "projects/p/locations/l/models/1", "training_seconds": 12}
    version = register_external_version(
        settings, source="automl", metrics=metrics(0.93), dataset_version="v-7", extra=extra
    )
    registry = ModelRegistry.from_settings(settings)
    record = registry.read_index().to_json()["versions"][version]
    raw = storage.read_bytes(storage.join(registry.version_uri(version), "metadata.json"))
    assert raw == json.dumps(json.loads(raw), indent=2, sort_keys=True).encode()  # stable, reviewable bytes
    assert json.loads(raw) == {
        "model_version": version,
        "created_at": json.loads(raw)["created_at"],
        "source": "automl",
        "metrics": metrics(0.93),
        "dataset": {"version": "v-7"},
        **extra,
    }
    assert json.loads(raw)["created_at"].endswith("Z")
    assert record == {
        "path": f"registry/versions/{version}",
        "metrics": metrics(0.93),
        "source": "automl",
        "dataset_version": "v-7",
        "created_at": record["created_at"],
        **extra,
    }


def test_registry_show_and_list_json_print_exactly_the_record(tmp_path, monkeypatch, capsys):
    import json

    from trainer import cli

    monkeypatch.setenv("FMNIST_ENV", "local")
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    registry = ModelRegistry.from_settings(load_config())
    metadata = {"model_version": "v-x", "feature_baseline": {"bins": [1, 2]}, "source": "custom"}
    with_metadata = registry.register(
        {"metadata.json": json.dumps(metadata).encode()}, metrics(0.9), "custom", dataset_version="v-1"
    )
    without = registry.register({"model.onnx": b"onnx"}, metrics(0.91), "custom", dataset_version="v-1")
    index = registry.read_index().to_json()

    assert cli.main(["registry", "show", with_metadata]) == 0
    shown = {
        "version": with_metadata,
        "record": index["versions"][with_metadata],
        "aliases": [],
        "metadata": {"model_version": "v-x", "source": "custom"},  # the bulky baseline left out
    }
    assert capsys.readouterr().out == json.dumps(shown, indent=2, sort_keys=True) + "\n"
    assert cli.main(["registry", "show", "candidate"]) == 0
    shown = {"version": without, "record": index["versions"][without], "aliases": ["candidate"]}
    assert capsys.readouterr().out == json.dumps(shown, indent=2, sort_keys=True) + "\n"
    assert cli.main(["registry", "list", "--json"]) == 0
    assert capsys.readouterr().out == json.dumps(index, indent=2, sort_keys=True) + "\n"


# ---- rollback ------------------------------------------------------------------------------------------------------


def test_rollback_without_a_champion_or_to_a_version_never_champion_says_so(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.3)
    with pytest.raises(RegistryError, match="^there is no champion to roll back$"):
        registry.rollback()
    first, second, never = add(registry, 0.9), add(registry, 0.91), add(registry, 0.5)
    registry.promote(first)
    with pytest.raises(RegistryError, match=f"^{never} was never champion before {first}; earlier champions: none$"):
        registry.rollback(to=never)
    registry.promote(second)
    with pytest.raises(
        RegistryError, match=f"^{never} was never champion before {second}; earlier champions: {first}$"
    ):
        registry.rollback(to=never)


def test_rollback_records_its_event_and_trims_the_history(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.3)
    versions = [add(registry, 0.90 + i / 100) for i in range(3)]
    for version in versions:
        registry.promote(version)
    assert registry.rollback() == (versions[1], versions[2])
    index = registry.read_index().to_json()
    event = index["events"][-1]
    assert event["action"] == "rollback" and event["version"] == versions[1] and event["previous"] == versions[2]
    assert index["history"]["champion"] == versions[:2] and index["aliases"]["champion"] == versions[1]


def test_rollback_of_a_hand_edited_index_whose_history_lacks_the_champion(tmp_path):
    """An index restored by hand may name a champion its history does not end with: roll back to the last entry."""
    import json

    registry = ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.3)
    a, b, c = add(registry, 0.9), add(registry, 0.91), add(registry, 0.92)
    index = registry.read_index().to_json()
    index["aliases"]["champion"] = c
    index["history"] = {"champion": [a, b]}
    storage.write_bytes(registry.index_uri, json.dumps(index).encode())
    assert registry.rollback() == (b, c)
    assert registry.read_index().to_json()["history"]["champion"] == [a, b]
    index = registry.read_index().to_json()
    index["history"] = {}
    storage.write_bytes(registry.index_uri, json.dumps(index).encode())
    with pytest.raises(RegistryError, match="is the first champion: there is nothing to roll back to"):
        registry.rollback()


def test_the_registry_takes_its_gate_from_config(tmp_path):
    settings = load_config(
        "local",
        environ={
            "FMNIST_STORAGE_ROOT": str(tmp_path),
            "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.5",
            "FMNIST_REGISTRY__REGRESSION_TOLERANCE": "0.02",
        },
    )
    registry = ModelRegistry.from_settings(settings)
    assert (registry.root, registry.accuracy_floor, registry.regression_tolerance) == (
        settings.models_bucket,
        0.5,
        0.02,
    )
