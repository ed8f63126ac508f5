"""The typed registry index, value by value: the write sequence (inside the signed bytes: the service refuses an
index older than one it accepted, so it may only go up, by one per write, and a bad one is refused), every
refusal's exact sentence, the record's accuracy and stored form, `record()`'s resolution, the changes' values."""

from __future__ import annotations

import json

import pytest

from contracts.registry_index import (
    RegistryIndex,
    RegistryIndexError,
    UnknownReference,
    VersionRecord,
    empty_index,
    index_sequence,
    parse_index,
    parse_record,
)
from tests.contracts.test_registry_index import DIGEST, STORED

WHERE = "gs://b/registry/index.json"


def refusal(document: object, where: str = WHERE) -> str:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(RegistryIndexError) as refused:
        parse_index(data, where)
    return str(refused.value)


# ---- the write sequence ----------------------------------------------------------------------------------------


def test_the_sequence_is_read_stored_and_goes_up_by_one_per_write():
    index = parse_index(json.dumps({**STORED, "sequence": 7}), WHERE)
    assert index.sequence == 7 and index.to_json()["sequence"] == 7
    assert index.with_next_sequence().sequence == 8 and index.sequence == 7  # a new index; this one unchanged
    assert parse_index(index.with_next_sequence().to_json(), WHERE).sequence == 8
    unsequenced = parse_index(json.dumps(STORED), WHERE)
    assert unsequenced.sequence == 0 and "sequence" not in unsequenced.to_json()  # an index from before it
    assert unsequenced.with_next_sequence().to_json()["sequence"] == 1


@pytest.mark.parametrize("bad,kind", [(-1, "int"), (True, "bool"), ("3", "str"), (2.0, "float"), (None, "NoneType")])
def test_a_sequence_that_could_go_backwards_or_is_not_a_count_is_refused(bad, kind):
    assert refusal({**STORED, "sequence": bad}) == f"{WHERE}: sequence must be a non-negative integer, got {kind}"
    with pytest.raises(RegistryIndexError):
        index_sequence({"sequence": bad}, WHERE)


def test_a_zero_sequence_reads_as_none_yet():
    assert index_sequence({}, WHERE) == 0 and index_sequence({"sequence": 0}, WHERE) == 0


# ---- each refusal's sentence -----------------------------------------------------------------------------------


def test_each_malformed_part_is_refused_with_its_exact_sentence():
    assert refusal(b"{ not json") == (
        f"{WHERE} is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 3 (char 2)); "
        "restore it from the bucket's object versions"
    )
    assert refusal([]) == f"{WHERE}: expected a JSON object with 'versions' and 'aliases', got list"
    assert refusal({"aliases": ["c"]}) == f"{WHERE}: aliases must be an object, got list"
    assert refusal({"versions": "v1"}) == f"{WHERE}: versions must be an object, got str"
    assert refusal({"history": []}) == f"{WHERE}: history must be an object, got list"
    assert refusal({"aliases": {"champion": 7}}) == f"{WHERE}: aliases.champion must be a version id string, got int"
    assert refusal({"history": {"champion": "v1"}}) == f"{WHERE}: history.champion must be a list of version ids"
    assert refusal({"history": {"champion": [1]}}) == f"{WHERE}: history.champion must be a list of version ids"
    assert refusal({"events": {}}) == f"{WHERE}: events must be a list of objects"
    assert refusal({"events": [1]}) == f"{WHERE}: events must be a list of objects"


def test_each_malformed_record_field_is_refused_with_its_exact_sentence():
    def record(fields: object, version: str = "v1") -> str:
        return refusal({"versions": {version: fields}})

    assert record(["x"]) == f"{WHERE}: versions.v1 must be an object, got list"
    assert record({"path": 5}) == f"{WHERE}: versions.v1.path must be a non-empty string, got int"
    assert record({"path": "  "}) == f"{WHERE}: versions.v1.path must be a non-empty string, got str"
    assert record({"metrics": [0.9]}) == f"{WHERE}: versions.v1.metrics must be an object, got list"
    for key in ("source", "dataset_version", "created_at"):
        assert record({key: 1}) == f"{WHERE}: versions.v1.{key} must be a string, got int"
    assert record({"files": {"a": "short"}}) == f"{WHERE}: versions.v1.files must map file names to SHA-256 hex digests"
    assert record({"files": {"a": DIGEST.upper()}}).endswith("files must map file names to SHA-256 hex digests")
    assert record({"files": ["a"]}).endswith("files must map file names to SHA-256 hex digests")
    assert record({"files": {"a": DIGEST + "0"}}).endswith("files must map file names to SHA-256 hex digests")
    long = "v" * 100
    assert record(["x"], long) == f"{WHERE}: versions.{'v' * 80} must be an object, got list"  # a name cut at 80


def test_an_alias_without_a_record_names_the_file_and_the_version_cut_at_80():
    long = "v" * 100
    index = parse_index(json.dumps({"versions": {}, "aliases": {"champion": long}}), WHERE)
    with pytest.raises(RegistryIndexError) as refused:
        index.resolve("champion")
    assert str(refused.value) == f"{WHERE}: alias 'champion' names version {'v' * 80}, which has no record"
    with pytest.raises(RegistryIndexError) as refused:
        empty_index(WHERE).with_alias("champion", "v9")
    assert str(refused.value) == f"{WHERE}: cannot point 'champion' at v9, which has no record"


def test_an_unknown_reference_is_named_with_the_aliases_there_are():
    index = parse_index(json.dumps(STORED), WHERE)
    with pytest.raises(UnknownReference) as unknown:
        index.record("nope")
    assert str(unknown.value) == "nope" and unknown.value.args == ("nope",) and unknown.value.ref == "nope"
    assert unknown.value.aliases == ["candidate", "champion"]


# ---- reading ---------------------------------------------------------------------------------------------------


def test_record_follows_an_alias_or_a_version_id():
    index = parse_index(json.dumps(STORED), WHERE)
    assert index.record("champion") is index.versions["v1"] and index.record("v2") is index.versions["v2"]
    assert index.record("champion").dataset_version == "d1" and index.record("candidate").source == "automl"


def test_accuracy_is_a_number_or_none():
    assert VersionRecord("p", metrics={"accuracy": 1}).accuracy == 1.0
    assert isinstance(VersionRecord("p", metrics={"accuracy": 1}).accuracy, float)
    assert VersionRecord("p", metrics={"accuracy": 0.25}).accuracy == 0.25
    for value in (True, "0.9", None):
        assert VersionRecord("p", metrics={"accuracy": value}).accuracy is None
    assert VersionRecord("p").accuracy is None


def test_a_record_reads_every_field_and_stores_the_same():
    stored = STORED["versions"]["v1"]
    record = parse_record("v1", stored, WHERE)
    assert (record.path, record.source, record.dataset_version, record.created_at) == (
        "registry/versions/v1",
        "custom",
        "d1",
        "2026-01-01T00:00:00Z",
    )
    assert record.metrics == {"accuracy": 0.9} and record.files == {"model.onnx": DIGEST}
    assert record.to_json() == stored
    bare = parse_record("v3", {"path": ""}, WHERE)  # an empty path is the version's own directory
    assert bare.to_json() == {
        "path": "registry/versions/v3",
        "metrics": {},
        "source": None,
        "dataset_version": None,
        "created_at": None,
    }
    assert parse_record("v3", {"metrics": None}, WHERE).metrics == {}


def test_the_index_reads_from_bytes_text_or_an_object_and_keeps_where_it_came_from():
    for data in (json.dumps(STORED).encode(), json.dumps(STORED), STORED):
        index = parse_index(data, WHERE)
        assert index.where == WHERE and index.alias("champion") == "v1" and index.alias("candidate") == "v2"
        assert index.history == {"champion": ("v1",)} and index.events == (STORED["events"][0],)
    assert parse_index({"versions": {}, "events": None}, WHERE).events == ()
    assert parse_index({}, WHERE).history == {"champion": ()}
    assert parse_index({"history": {"candidate": ["v2"]}}, WHERE).history == {"champion": (), "candidate": ("v2",)}


# ---- changing --------------------------------------------------------------------------------------------------


def test_each_change_returns_an_index_with_exactly_that_change():
    index = parse_index(json.dumps(STORED), WHERE)
    assert index.with_history("champion", ["v1", "v2"]).history == {"champion": ("v1", "v2")}
    event = {"action": "promote", "version": "v2"}
    assert index.with_event(event).events == (STORED["events"][0], event)
    assert index.with_alias("champion", "v2").aliases == {"champion": "v2", "candidate": "v2"}
    assert index.with_alias("champion", "v2").aliases_of("v2") == ["candidate", "champion"]
    with pytest.raises(RegistryIndexError) as refused:
        index.with_version("v1", index.versions["v1"])
    assert str(refused.value) == "version v1 is already registered; versions are immutable"
    assert RegistryIndex().history == {"champion": ()} and RegistryIndex().where == "index.json"
    assert empty_index().where == "index.json" and empty_index(WHERE).where == WHERE


def test_a_new_record_takes_known_fields_and_keeps_the_others_apart():
    record = VersionRecord.new("v4", source="custom", dataset_version="d", created_at="t", run_id="r")
    assert record.path == "registry/versions/v4" and record.source == "custom" and record.created_at == "t"
    assert record.dataset_version == "d" and record.extra == {"run_id": "r"}
    with pytest.raises(RegistryIndexError) as refused:
        VersionRecord.new("v4", source=3)
    assert str(refused.value) == "a new record: versions.v4.source must be a string, got int"
