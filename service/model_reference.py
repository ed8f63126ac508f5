"""Where a model reference leads: a model directory as is, or `<models-bucket-root>@<alias or version id>` through
`<root>/registry/index.json` (docs/CONTRACTS.md), parsed by the registry's one parser (contracts.registry_index).
A malformed index names the file and the field at fault, like every other load error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import registry_index
from contracts.layout import REGISTRY_INDEX, parse_model_reference
from contracts.registry_index import RegistryIndex
from service.model_errors import ModelLoadError, NoModelPromoted, ObjectNotFound
from service.model_reader import ModelReader, contained, join


def split_reference(uri: str) -> tuple[str, str | None]:
    """'<root>@<alias>' -> (root, alias); a plain directory -> (uri, None)."""
    reference = parse_model_reference(uri)
    if reference is not None:
        return reference[0].rstrip("/"), reference[1]
    return uri.rstrip("/") or uri, None


def resolve_version_dir(uri: str, reader: ModelReader | None = None) -> tuple[str, str | None]:
    """The model version directory a URI names, and the alias it was reached through (if any)."""
    resolved = resolve(uri, reader)
    return resolved.version_dir, resolved.alias


@dataclass(frozen=True)
class Resolved:
    """Where a model reference leads now: the version directory and, through a registry, the version's record."""

    uri: str
    version_dir: str
    alias: str | None
    version_id: str | None = None
    record: dict[str, Any] | None = None


def resolve(uri: str, reader: ModelReader | None = None) -> Resolved:
    """Resolve `uri` (a model directory, or `<root>@<alias or version id>`) by reading the registry index once."""
    reader = reader or ModelReader()
    root, alias = split_reference(uri)
    if alias is None:
        return Resolved(uri, root, None)
    index_uri = join(root, REGISTRY_INDEX)
    try:
        data = reader.read(index_uri)
    except ObjectNotFound:
        raise missing_index(uri) from None
    return select_version(uri, parse_index(data, index_uri), index_uri)


def missing_index(uri: str) -> NoModelPromoted:
    """What to say while the registry has no index.json at all (a fresh project)."""
    root, alias = split_reference(uri)
    return NoModelPromoted(
        f"no model to serve: {join(root, REGISTRY_INDEX)} does not exist, so the registry at {root} has no "
        f"'{alias}'. Train, export and promote a model first (python -m trainer train / export / registry "
        "promote), or point MODEL_URI at a model directory."
    )


def parse_index(data: bytes, index_uri: str) -> RegistryIndex:
    """index.json through the registry's one parser (contracts.registry_index); ModelLoadError naming the field."""
    try:
        return registry_index.parse_index(data, index_uri)
    except registry_index.RegistryIndexError as exc:
        raise ModelLoadError(str(exc)) from None


def select_version(uri: str, index: RegistryIndex, index_uri: str) -> Resolved:
    """The version `uri`'s alias names in `index` (an alias first; else a registered version id, which pins it)."""
    root, alias = split_reference(uri)
    if alias is None:
        return Resolved(uri, root, None)
    try:
        version_id = index.resolve(alias)
    except registry_index.UnknownReference as exc:
        known = ", ".join(sorted(name[:40] for name in exc.aliases)[:10]) or "none"
        raise NoModelPromoted(
            f"no model to serve: the registry at {root} has no '{alias}' alias (aliases: {known}). "
            f"Promote a version to '{alias}' with python -m trainer registry, "
            "or point MODEL_URI at a model directory."
        ) from None
    except registry_index.RegistryIndexError as exc:
        raise ModelLoadError(str(exc)) from None
    record = index.versions[version_id]
    directory = contained(root, record.path, index_uri, f"versions.{version_id[:80]}.path")
    return Resolved(uri, directory, alias, version_id, record.to_json())
