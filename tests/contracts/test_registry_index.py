"""The registry index's one parser and one resolution (contracts.registry_index), and a check that no reader in the
source tree goes around them by indexing index.json's raw `aliases` / `versions`."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from contracts.registry_index import (
    RegistryIndexError,
    UnknownReference,
    VersionRecord,
    empty_index,
    parse_index,
    parse_record,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("contracts", "settings", "trainer", "service", "infra", "lifecycle", "bench", "notebooks")
OWNER = Path("contracts/registry_index.py")  # the one module that reads the stored form
RAW_KEYS = {"aliases", "versions"}
DIGEST = "ab" * 32

STORED = {
    "versions": {
        "v1": {
            "path": "registry/versions/v1",
            "metrics": {"accuracy": 0.9},
            "source": "custom",
            "dataset_version": "d1",
            "created_at": "2026-01-01T00:00:00Z",
            "files": {"model.onnx": DIGEST},
            "run_id": "r1",
        },
        "v2": {"path": "registry/versions/v2", "metrics": {}, "source": "automl", "vertex_model": "m/2"},
    },
    "aliases": {"champion": "v1", "candidate": "v2"},
    "history": {"champion": ["v1"]},
    "events": [{"at": "2026-01-01T00:00:00Z", "action": "register", "version": "v1"}],
}


def test_the_stored_form_survives_a_round_trip():
    index = parse_index(json.dumps(STORED).encode(), "index.json")
    again = index.to_json()
    assert again["aliases"] == STORED["aliases"] and again["history"] == STORED["history"]
    assert again["events"] == STORED["events"]
    assert again["versions"]["v1"] == STORED["versions"]["v1"]
    assert parse_index(again, "index.json") == index
    assert index.versions["v1"].files == {"model.onnx": DIGEST} and index.versions["v1"].extra == {"run_id": "r1"}
    assert index.versions["v2"].extra == {"vertex_model": "m/2"} and index.versions["v2"].files is None


def test_an_older_index_reads_with_empty_parts():
    index = parse_index(b'{"versions": {}, "aliases": {}}', "index.json")
    assert index == empty_index()
    assert index.to_json() == {"versions": {}, "aliases": {}, "history": {"champion": []}, "events": []}


def test_resolution_is_an_alias_first_then_a_version_id():
    index = parse_index(json.dumps(STORED), "index.json")
    assert index.resolve("champion") == "v1" and index.resolve("v2") == "v2"
    assert index.aliases_of("v1") == ["champion"] and index.alias("nothing") is None
    shadowing = parse_index(json.dumps({**STORED, "aliases": {"v2": "v1"}}), "index.json")
    assert shadowing.resolve("v2") == "v1"  # an alias named like a version wins, as the service always did
    with pytest.raises(UnknownReference) as unknown:
        index.resolve("nope")
    assert unknown.value.aliases == ["candidate", "champion"]
    dangling = parse_index(json.dumps({**STORED, "aliases": {"champion": "v9"}}), "gs://b/registry/index.json")
    with pytest.raises(RegistryIndexError, match=r"^gs://b/registry/index.json: alias 'champion' names version v9"):
        dangling.resolve("champion")


@pytest.mark.parametrize(
    "document,fragment",
    [
        (b"{ not json", "is not valid JSON"),
        ([], "expected a JSON object with 'versions' and 'aliases', got list"),
        ({"aliases": ["champion"]}, "aliases must be an object, got list"),
        ({"versions": "v1"}, "versions must be an object, got str"),
        ({"aliases": {"champion": 7}}, "aliases.champion must be a version id string, got int"),
        ({"versions": {"v1": ["x"]}}, "versions.v1 must be an object, got list"),
        ({"versions": {"v1": {"path": 5}}}, "versions.v1.path must be a non-empty string, got int"),
        ({"versions": {"v1": {"metrics": [0.9]}}}, "versions.v1.metrics must be an object, got list"),
        ({"versions": {"v1": {"source": 1}}}, "versions.v1.source must be a string, got int"),
        ({"versions": {"v1": {"files": {"a": "short"}}}}, "versions.v1.files must map file names to SHA-256"),
        ({"history": {"champion": "v1"}}, "history.champion must be a list of version ids"),
        ({"events": {}}, "events must be a list of objects"),
    ],
)
def test_a_malformed_index_names_the_file_and_the_field(document, fragment):
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(RegistryIndexError) as refused:
        parse_index(data, "gs://b/registry/index.json")
    assert str(refused.value).startswith("gs://b/registry/index.json") and fragment in str(refused.value)


def test_changes_return_a_new_index_and_refuse_what_the_registry_never_writes():
    index = empty_index()
    record = VersionRecord.new("v1", metrics={"accuracy": 0.9}, source="custom", run_id="r1")
    added = index.with_version("v1", record).with_alias("candidate", "v1")
    assert index.versions == {} and added.resolve("candidate") == "v1" and record.path == "registry/versions/v1"
    assert record.extra == {"run_id": "r1"} and record.accuracy == 0.9
    with pytest.raises(RegistryIndexError, match="already registered"):
        added.with_version("v1", record)
    with pytest.raises(RegistryIndexError, match="which has no record"):
        added.with_alias("champion", "v9")
    with pytest.raises(TypeError):
        added.versions["v2"] = record  # type: ignore[index]
    assert parse_record("v3", {}, "index.json").path == "registry/versions/v3"


# ---- no reader goes around the parser ------------------------------------------------------------------------


def _sources() -> list[tuple[Path, str]]:
    """(path, Python source) of every module and notebook code cell outside tests/."""
    found = []
    for directory in SOURCE_DIRS:
        for path in sorted((REPO_ROOT / directory).rglob("*.py")):
            found.append((path.relative_to(REPO_ROOT), path.read_text()))
        for path in sorted((REPO_ROOT / directory).rglob("*.ipynb")):
            cells = json.loads(path.read_text())["cells"]
            code = "\n".join(
                line if not line.lstrip().startswith(("%", "!")) else ""
                for cell in cells
                if cell["cell_type"] == "code"
                for line in "".join(cell["source"]).splitlines()
            )
            found.append((path.relative_to(REPO_ROOT), code))
    return found


def raw_index_reads(source: str) -> list[int]:
    """Lines that index `["aliases"]` / `["versions"]` or call `.get("aliases")` / `.get("versions")`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "setdefault", "pop")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            key = node.args[0].value
        if key in RAW_KEYS:
            lines.append(node.lineno)
    return lines


def test_the_check_sees_a_raw_read():
    assert raw_index_reads('index = registry.read_index()\nversion = index["aliases"]["champion"]\n') == [2]
    assert raw_index_reads('index.get("versions", {})') == [1]
    assert raw_index_reads("index.alias('champion')\nindex.versions[v].metrics['accuracy']") == []


def test_no_reader_bypasses_the_typed_registry_index():
    offenders = [f"{path}:{line}" for path, source in _sources() if path != OWNER for line in raw_index_reads(source)]
    assert not offenders, (
        f"raw index.json reads at {', '.join(offenders)}: read the registry through contracts.registry_index "
        "(parse_index, RegistryIndex.resolve / .alias / .versions / .aliases_of)"
    )
