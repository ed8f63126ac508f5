"""The registry index as stored and as read: its exact bytes and content type, its events, the defaults an older
index gets, version ids, every message the registry gives, and the command line's words."""

import json
import re
import sys
import time
from datetime import UTC, datetime

import pytest

import storage
from contracts.registry_index import parse_index
from settings import load_config
from trainer import cli
from trainer.models import registry as registry_module
from trainer.models.registry import ModelRegistry, RegistryError, new_version_id


def metrics(accuracy):
    return {"accuracy": accuracy}


def add(registry, accuracy, version=None):
    return registry.register(
        {"metadata.json": b"{}"}, metrics(accuracy), "custom", dataset_version="v-1", version=version
    )


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.3)


def test_an_empty_registry_reads_as_the_empty_index(registry):
    assert registry.read_index().to_json() == {"versions": {}, "aliases": {}, "history": {"champion": []}, "events": []}


def test_the_index_is_stored_sorted_and_indented_and_records_every_event(registry):
    first = add(registry, 0.9)
    registry.promote(first)
    second = add(registry, 0.91)
    registry.promote(second)
    registry.rollback()
    raw = storage.read_bytes(registry.index_uri)
    index = json.loads(raw)
    assert raw == json.dumps(index, indent=2, sort_keys=True).encode()
    events = [{k: v for k, v in event.items() if k != "at"} for event in index["events"]]
    assert events == [
        {"action": "register", "version": first, "alias": "candidate", "source": "custom"},
        {"action": "promote", "version": first, "previous": None},
        {"action": "register", "version": second, "alias": "candidate", "source": "custom"},
        {"action": "promote", "version": second, "previous": first},
        {"action": "rollback", "version": first, "previous": second},
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["at"]) for event in index["events"])


def test_on_gcs_the_index_is_json(gcs_bucket):
    registry = ModelRegistry(gcs_bucket)
    add(registry, 0.9)
    blob = storage.gcs_client().bucket(gcs_bucket[5:]).get_blob("registry/index.json")
    assert blob.content_type == "application/json"


def test_an_older_index_gets_the_missing_parts_and_can_still_promote(registry):
    version = add(registry, 0.9)
    legacy = registry.read_index().to_json()
    storage.write_bytes(registry.index_uri, json.dumps({"versions": legacy["versions"], "aliases": {}}).encode())
    assert registry.read_index().to_json() == {
        "versions": legacy["versions"],
        "aliases": {},
        "history": {"champion": []},
        "events": [],
    }
    storage.write_bytes(
        registry.index_uri, json.dumps({"versions": legacy["versions"], "aliases": {}, "history": {}}).encode()
    )
    assert registry.promote(version) == (version, None)
    assert registry.read_index().to_json()["history"] == {"champion": [version]}


def test_a_corrupt_index_names_itself_and_how_to_restore_it(registry):
    add(registry, 0.9)
    storage.write_bytes(registry.index_uri, b"{ not json")
    pattern = (
        rf"^{re.escape(registry.index_uri)} is not valid JSON \(.+\); restore it from the bucket's object versions$"
    )
    with pytest.raises(RegistryError, match=pattern):
        registry.read_index().to_json()
    with pytest.raises(RegistryError, match=pattern):
        add(registry, 0.91)  # a change reads it through the compare-and-swap loop


def test_every_refusal_says_exactly_what_and_how(registry):
    with pytest.raises(RegistryError) as caught:
        registry.resolve("nope")
    assert str(caught.value) == (
        "'nope' is neither a registered version nor an alias (aliases: none yet); see `python -m trainer registry list`"
    )
    first = add(registry, 0.9)
    registry.promote(first)
    with pytest.raises(
        RegistryError, match=r"\(aliases: candidate, champion\); see `python -m trainer registry list`$"
    ):
        registry.resolve("nope")
    with pytest.raises(RegistryError) as caught:
        registry.register({"a": b""}, metrics(0.9), "manual", dataset_version=None)
    assert str(caught.value) == "source must be one of custom, automl, got 'manual'"
    with pytest.raises(RegistryError) as caught:
        add(registry, 0.95, version=first)
    assert str(caught.value) == (
        f"version {first} is already registered at {registry.version_uri(first)}: registered versions are "
        "immutable; register under a new version id"
    )
    worse = add(registry, 0.8)
    with pytest.raises(registry_module.GateRefused) as caught:
        registry.promote(worse)
    assert str(caught.value) == (
        f"promotion of {worse} refused: test accuracy 0.8000 is 0.1000 below champion {first} (0.9000), more than "
        "the tolerance 0.0050 (registry.regression_tolerance)"
    )
    with pytest.raises(registry_module.GateRefused) as caught:
        ModelRegistry(registry.root, accuracy_floor=0.85).promote(worse)
    assert str(caught.value) == (
        f"promotion of {worse} refused: test accuracy 0.8000 is below the floor 0.8500 (registry.accuracy_floor)"
    )


def test_a_rollback_target_lists_every_earlier_champion(registry):
    versions = [add(registry, 0.9 + i / 100) for i in range(3)]
    for version in versions:
        registry.promote(version)
    stranger = add(registry, 0.5)
    with pytest.raises(RegistryError, match=f"earlier champions: {versions[0]}, {versions[1]}$"):
        registry.rollback(to=stranger)


def test_a_second_registration_of_a_killed_version_replaces_every_leftover_file(registry):
    leftover = storage.join(registry.version_uri("v1-left"), "stale.bin")
    storage.write_bytes(leftover, b"from the killed attempt")
    add(registry, 0.9, version="v1-left")
    assert storage.list_uris(registry.version_uri("v1-left")) == [
        storage.join(registry.version_uri("v1-left"), "metadata.json")
    ]


def test_the_backoff_between_lost_attempts_is_drawn_from_10_to_50_ms(registry, monkeypatch):
    drawn = []
    monkeypatch.setattr(registry_module.random, "uniform", lambda low, high: drawn.append((low, high)) or 0.0)
    monkeypatch.setattr(registry_module.time, "sleep", lambda seconds: None)
    real, lost = storage.write_if_unchanged, []

    def lose_once(uri, data, token, **kwargs):
        if not lost:
            lost.append(1)
            raise storage.PreconditionFailed(uri)
        return real(uri, data, token, **kwargs)

    monkeypatch.setattr(storage, "write_if_unchanged", lose_once)
    add(registry, 0.9)
    assert drawn == [(0.01, 0.05)]


@pytest.fixture
def far_from_utc(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_version_ids_are_utc_time_and_four_hex_digits(far_from_utc):
    before = datetime.now(UTC).replace(microsecond=0)
    version = new_version_id()
    after = datetime.now(UTC)
    match = re.fullmatch(r"v(\d{8}-\d{6})-[0-9a-f]{4}", version)
    assert match, version
    assert before <= datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=UTC) <= after


def test_the_table_copes_with_a_record_without_metrics():
    from trainer.models.registry import format_table

    table = format_table(parse_index(b'{"versions": {"v1": {"source": "automl"}}, "aliases": {}}', "index.json"))
    assert table.splitlines()[1].split() == ["v1", "automl", "-", "-", "None"]


def test_the_command_line_promotes_and_rolls_back_to_a_named_champion(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_ENV", "local")
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    registry = ModelRegistry.from_settings(load_config())
    versions = [add(registry, 0.9 + i / 100) for i in range(3)]
    assert cli.main(["registry", "promote", versions[0]]) == 0
    assert capsys.readouterr().out == f"champion is now {versions[0]} (accuracy 0.9000); was none\n"
    for version in versions[1:]:
        assert cli.main(["registry", "promote", version]) == 0
    capsys.readouterr()
    assert cli.main(["registry", "rollback", "--to", versions[0]]) == 0
    assert capsys.readouterr().out == f"champion rolled back from {versions[2]} to {versions[0]}\n"
    legacy = {"versions": registry.read_index().to_json()["versions"], "aliases": {}}
    storage.write_bytes(registry.index_uri, json.dumps(legacy).encode())  # unsorted once defaults are added
    assert cli.main(["registry", "list", "--json"]) == 0
    assert capsys.readouterr().out == json.dumps(registry.read_index().to_json(), indent=2, sort_keys=True) + "\n"


def test_files_given_by_path_are_copied_under_their_names(registry, tmp_path):
    model = tmp_path / "exported.onnx"
    model.write_bytes(b"onnx bytes")
    version = registry.register(
        {"model.onnx": model, "metadata.json": b"{}"}, metrics(0.9), "custom", dataset_version=None
    )
    copied = storage.join(registry.version_uri(version), "model.onnx")
    assert storage.read_bytes(copied) == b"onnx bytes"
    assert sorted(storage.list_uris(registry.version_uri(version))) == sorted(
        [copied, storage.join(registry.version_uri(version), "metadata.json")]
    )


def test_a_change_to_a_corrupt_index_names_it(registry):
    version = add(registry, 0.9)
    storage.write_bytes(registry.index_uri, b"[broken")
    with pytest.raises(RegistryError, match=rf"^{re.escape(registry.index_uri)} is not valid JSON"):
        registry.promote(version)


def test_the_same_version_id_registered_twice_at_once_lands_once(registry, monkeypatch):
    from tests.trainer.test_registry_races import Interleaving

    race = Interleaving(registry, monkeypatch)
    race.before_next_write(lambda: add(registry, 0.95, version="v1-twice"))
    with pytest.raises(RegistryError, match="^version v1-twice is already registered; versions are immutable$"):
        add(registry, 0.9, version="v1-twice")
    assert registry.read_index().to_json()["versions"]["v1-twice"]["metrics"] == metrics(0.95)
