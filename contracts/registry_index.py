"""The model registry's index (`registry/index.json`): typed, frozen, parsed and validated in one place.

Why here: the trainer writes the index (register, promote, rollback, events), the service follows an alias in it,
the lifecycle, notebooks and benches read it. Each used to parse it its own way (leniently, strictly, or as a raw
dict); a field one of them misread broke another without an error. Pure Python, so the service image holds it.
Reading: `parse_index(data, where)`, then `index.resolve(ref)` (an alias first, else a registered version id).
Writing: the `with_*` methods return a new index; `to_json()` is what is stored. Fields: docs/CONTRACTS.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from contracts.layout import CHAMPION, version_dir

_DIGEST = re.compile(r"[0-9a-f]{64}")
_KNOWN_FIELDS = ("path", "metrics", "source", "dataset_version", "created_at", "files")


class RegistryIndexError(ValueError):
    """index.json is not what the registry writes; the message names the file and the field."""


class UnknownReference(LookupError):
    """Neither an alias nor a registered version id; `aliases` lists the aliases the index has."""

    def __init__(self, ref: str, aliases: list[str]):
        super().__init__(ref)
        self.ref, self.aliases = ref, aliases


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class VersionRecord:
    """One registered version: where its directory is, how it scored, where it came from, its files' digests."""

    path: str
    metrics: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    source: str | None = None  # "custom" or "automl"
    dataset_version: str | None = None
    created_at: str | None = None
    files: Mapping[str, str] | None = None  # file name -> SHA-256 hex of every file of the version directory
    extra: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))  # run_id, vertex_model, ...

    @property
    def accuracy(self) -> float | None:
        value = self.metrics.get("accuracy")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "metrics": dict(self.metrics),
            "source": self.source,
            "dataset_version": self.dataset_version,
            "created_at": self.created_at,
        }
        if self.files is not None:
            out["files"] = dict(self.files)
        return {**out, **self.extra}

    @classmethod
    def new(cls, version: str, **fields: Any) -> VersionRecord:
        """A record for a version being registered (`fields`: the known ones, any other goes to `extra`)."""
        return parse_record(version, {"path": version_dir(version), **fields}, "a new record")


@dataclass(frozen=True)
class RegistryIndex:
    """The versions, the aliases naming them, each alias's history (champions, oldest first), the event log."""

    versions: Mapping[str, VersionRecord] = field(default_factory=lambda: _frozen({}))
    aliases: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    history: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _frozen({CHAMPION: ()}))
    events: tuple[Mapping[str, Any], ...] = ()
    # +1 on every write, inside the signed bytes: the service refuses an index older than one it accepted (a
    # replay of an old, validly signed index; service/index_verification.py). 0: never written with one.
    sequence: int = 0
    where: str = field(default="index.json", compare=False)  # the file it was read from, for messages

    # ---- reading ---------------------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The version id `ref` names: an alias first, else a registered version id (which pins that version).
        UnknownReference for neither; RegistryIndexError for an alias naming a version without a record."""
        version = self.aliases.get(ref)
        if version is None:
            if ref in self.versions:
                return ref
            raise UnknownReference(ref, sorted(self.aliases))
        if version not in self.versions:
            raise RegistryIndexError(f"{self.where}: alias '{ref}' names version {version[:80]}, which has no record")
        return version

    def alias(self, name: str) -> str | None:
        """The version an alias names, None while it names none."""
        return self.aliases.get(name)

    def aliases_of(self, version: str) -> list[str]:
        return sorted(alias for alias, target in self.aliases.items() if target == version)

    def record(self, ref: str) -> VersionRecord:
        """The record of the version `ref` (an alias or a version id) names."""
        return self.versions[self.resolve(ref)]

    # ---- changing (a new index each time) ----------------------------------------------------------------------

    def with_version(self, version: str, record: VersionRecord) -> RegistryIndex:
        if version in self.versions:
            raise RegistryIndexError(f"version {version} is already registered; versions are immutable")
        return replace(self, versions=_frozen({**self.versions, version: record}))

    def with_alias(self, alias: str, version: str) -> RegistryIndex:
        if version not in self.versions:
            raise RegistryIndexError(f"{self.where}: cannot point '{alias}' at {version}, which has no record")
        return replace(self, aliases=_frozen({**self.aliases, alias: version}))

    def with_history(self, alias: str, versions: list[str] | tuple[str, ...]) -> RegistryIndex:
        return replace(self, history=_frozen({**self.history, alias: tuple(versions)}))

    def with_event(self, event: Mapping[str, Any]) -> RegistryIndex:
        return replace(self, events=(*self.events, _frozen(event)))

    def with_next_sequence(self) -> RegistryIndex:
        return replace(self, sequence=self.sequence + 1)

    def to_json(self) -> dict[str, Any]:
        """The stored form (json.dumps(..., indent=2, sort_keys=True) is what the registry writes)."""
        return {
            "versions": {version: record.to_json() for version, record in self.versions.items()},
            "aliases": dict(self.aliases),
            "history": {alias: list(versions) for alias, versions in self.history.items()},
            "events": [dict(event) for event in self.events],
            **({"sequence": self.sequence} if self.sequence else {}),
        }


def empty_index(where: str = "index.json") -> RegistryIndex:
    return RegistryIndex(where=where)


def parse_index(data: bytes | str | Mapping[str, Any], where: str) -> RegistryIndex:
    """index.json's bytes (or its decoded object) as a RegistryIndex; RegistryIndexError naming the bad field.

    Missing parts (an index from before `history` or `events`) read as empty; anything of the wrong type is refused.
    """
    if isinstance(data, bytes | str):
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise RegistryIndexError(
                f"{where} is not valid JSON ({exc}); restore it from the bucket's object versions"
            ) from None
    else:
        document = data
    if not isinstance(document, Mapping):
        raise RegistryIndexError(
            f"{where}: expected a JSON object with 'versions' and 'aliases', got {type(document).__name__}"
        )
    aliases = _object(document, "aliases", where)
    for alias, version in aliases.items():
        if not isinstance(version, str):
            raise RegistryIndexError(f"{where}: aliases.{alias} must be a version id string, got {_kind(version)}")
    versions = {
        str(version): parse_record(str(version), record, where)
        for version, record in _object(document, "versions", where).items()
    }
    history = {CHAMPION: (), **_object(document, "history", where)}
    for alias, ids in history.items():
        if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
            raise RegistryIndexError(f"{where}: history.{alias} must be a list of version ids")
    events = document.get("events")
    events = [] if events is None else events
    if not isinstance(events, list | tuple) or not all(isinstance(e, Mapping) for e in events):
        raise RegistryIndexError(f"{where}: events must be a list of objects")
    return RegistryIndex(
        sequence=index_sequence(document, where),
        versions=_frozen(versions),
        aliases=_frozen(aliases),
        history=_frozen({alias: tuple(ids) for alias, ids in history.items()}),
        events=tuple(_frozen(e) for e in events),
        where=where,
    )


def index_sequence(document: Mapping[str, Any], where: str) -> int:
    """The index's write sequence (0 when absent: an index from before replay protection)."""
    sequence = document.get("sequence", 0)
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise RegistryIndexError(f"{where}: sequence must be a non-negative integer, got {_kind(sequence)}")
    return sequence


def parse_record(version: str, record: object, where: str) -> VersionRecord:
    """One version's record; RegistryIndexError naming `versions.<id>.<field>` when a field has the wrong type."""
    name = f"versions.{version[:80]}"
    if not isinstance(record, Mapping):
        raise RegistryIndexError(f"{where}: {name} must be an object, got {_kind(record)}")
    path = record.get("path") or version_dir(version)
    if not isinstance(path, str) or not path.strip():
        raise RegistryIndexError(f"{where}: {name}.path must be a non-empty string, got {_kind(path)}")
    metrics = record.get("metrics")
    metrics = {} if metrics is None else metrics
    if not isinstance(metrics, Mapping):
        raise RegistryIndexError(f"{where}: {name}.metrics must be an object, got {_kind(metrics)}")
    texts = {}
    for key in ("source", "dataset_version", "created_at"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise RegistryIndexError(f"{where}: {name}.{key} must be a string, got {_kind(value)}")
        texts[key] = value
    files = record.get("files")
    if files is not None and not (
        isinstance(files, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) and _DIGEST.fullmatch(v) for k, v in files.items())
    ):
        raise RegistryIndexError(f"{where}: {name}.files must map file names to SHA-256 hex digests")
    return VersionRecord(
        path=path,
        metrics=_frozen(metrics),
        source=texts["source"],
        dataset_version=texts["dataset_version"],
        created_at=texts["created_at"],
        files=None if files is None else _frozen(files),
        extra=_frozen({k: v for k, v in record.items() if k not in _KNOWN_FIELDS}),
    )


def _object(document: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RegistryIndexError(f"{where}: {name} must be an object, got {_kind(value)}")
    return dict(value)


def _kind(value: object) -> str:
    return type(value).__name__
