"""Find and read the model the service serves: a version directory, local or on GCS, or a registry reference.

Contract (docs/CONTRACTS.md): a model reference is `<models-bucket-root>@<alias>`, resolved through
`<root>/registry/index.json`; anything else is a model version directory holding model.onnx and metadata.json
(and optionally samples.npz, a few test images for the page). Everything is read once, in the gunicorn master,
so a gs:// model is downloaded once and a missing model stops start-up with one clear message. The serving
artifact stays a file (a gs:// one is downloaded into a local cache directory): workers build their sessions from
the path, so no copy of the model's bytes sits in the master's memory, and in every worker's RSS with it.
Why every name read from a file is checked: a registry record's `path` and a metadata `serving_artifact` come
from the bucket, and must not steer a read outside it (an absolute name, `..`); a malformed index or metadata
stops start-up with the file and the field at fault, like every other load error.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.layout import REGISTRY_INDEX, ModelFiles, parse_model_reference, version_dir
from service.gcs import GCS_SCHEME, GcsError, GcsNotFound, GcsReader

METADATA_FILE, SAMPLES_FILE, DEFAULT_ARTIFACT = ModelFiles.METADATA, ModelFiles.SAMPLES, ModelFiles.ONNX
_REQUIRED_KEYS = ("model_version", "class_names", "input")


class ModelLoadError(Exception):
    """The model could not be found, read or validated; the message says where and what to do."""


class _NotFound(ModelLoadError):
    pass


class NoModelPromoted(ModelLoadError):
    """The registry has no version under the alias yet (or no index at all): the service can wait for one."""


@dataclass(frozen=True)
class SampleImages:
    """A few labelled test images shipped in the model directory, for the page's 'random test image'."""

    images: np.ndarray  # uint8 [K, 28, 28]
    labels: np.ndarray | None  # int [K] or None


@dataclass(frozen=True)
class ModelBundle:
    """Everything read from the model directory; workers build their inference sessions from `model_path`."""

    requested_uri: str
    version_dir: str
    alias: str | None
    metadata: dict[str, Any]
    model_path: str  # a local file
    samples: SampleImages | None

    @property
    def version(self) -> str:
        return str(self.metadata["model_version"])

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])


def join(base: str, *parts: str) -> str:
    if base.startswith(GCS_SCHEME):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


class _Reader:
    def __init__(self) -> None:
        self._gcs: GcsReader | None = None

    def local_copy(self, uri: str, cache_dir: str | None) -> str:
        """A local file holding the object: the file itself when local, else a download into cache_dir."""
        if not uri.startswith(GCS_SCHEME):
            if not Path(uri).is_file():
                raise _NotFound(f"{uri} does not exist")
            return uri
        data = self.read(uri)
        if cache_dir is None:
            parent = os.environ.get("SERVICE_STATE_DIR") or os.environ.get("TMPDIR") or "/tmp"
            cache_dir = os.path.join(parent, f"fmnist-model-{os.getpid()}-{os.urandom(4).hex()}")
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, uri.rsplit("/", 1)[-1])
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    def read(self, uri: str) -> bytes:
        if uri.startswith(GCS_SCHEME):
            self._gcs = self._gcs or GcsReader()
            try:
                return self._gcs.read(uri)
            except GcsNotFound:
                raise _NotFound(f"{uri} does not exist") from None
            except GcsError as exc:
                raise ModelLoadError(f"cannot read {uri}: {exc}") from None
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise _NotFound(f"{uri} does not exist") from None
        except OSError as exc:
            raise ModelLoadError(f"cannot read {uri}: {exc.strerror}") from None


def contained(base: str, name: object, where: str, field: str) -> str:
    """`base` joined with the relative `name` read from `where`; ModelLoadError unless it stays inside `base`."""
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"{where}: {field} must be a non-empty string, got {type(name).__name__}")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or "://" in name or ":" in parts[0] or ".." in parts or "\0" in name:
        raise ModelLoadError(
            f"{where}: {field} {name[:80]!r} must be a path relative to {base} without '..' (refused: it would "
            "read outside the models bucket or the model directory)"
        )
    joined = join(base, name)
    if not base.startswith(GCS_SCHEME):
        root = Path(base).resolve()
        if not Path(joined).resolve().is_relative_to(root):
            raise ModelLoadError(f"{where}: {field} {name[:80]!r} leads outside {base} (through a link); refused")
    return joined


def split_reference(uri: str) -> tuple[str, str | None]:
    """'<root>@<alias>' -> (root, alias); a plain directory -> (uri, None)."""
    reference = parse_model_reference(uri)
    if reference is not None:
        return reference[0].rstrip("/"), reference[1]
    return uri.rstrip("/") or uri, None


def resolve_version_dir(uri: str, reader: _Reader | None = None) -> tuple[str, str | None]:
    """The model version directory a URI names, and the alias it was reached through (if any)."""
    reader = reader or _Reader()
    root, alias = split_reference(uri)
    if alias is None:
        return root, None
    index_uri = join(root, REGISTRY_INDEX)
    try:
        index = json.loads(reader.read(index_uri))
    except _NotFound:
        raise NoModelPromoted(
            f"no model to serve: {index_uri} does not exist, so the registry at {root} has no '{alias}'. "
            "Train, export and promote a model first (python -m trainer train / export / registry promote), "
            "or point MODEL_URI at a model directory."
        ) from None
    except ValueError as exc:
        raise ModelLoadError(f"{index_uri}: not valid JSON ({exc})") from None
    if not isinstance(index, dict):
        raise ModelLoadError(
            f"{index_uri}: expected a JSON object with 'versions' and 'aliases', got {type(index).__name__}"
        )
    aliases = _object_field(index, "aliases", index_uri)
    versions = _object_field(index, "versions", index_uri)
    version_id = aliases.get(alias)
    if version_id is not None and not isinstance(version_id, str):
        kind = type(version_id).__name__
        raise ModelLoadError(f"{index_uri}: aliases.{alias} must be a version id string, got {kind}")
    if not version_id:
        known = ", ".join(sorted(str(name)[:40] for name in aliases)[:10]) or "none"
        raise NoModelPromoted(
            f"no model to serve: the registry at {root} has no '{alias}' alias (aliases: {known}). "
            f"Promote a version to '{alias}' with python -m trainer registry, "
            "or point MODEL_URI at a model directory."
        )
    record = versions.get(version_id)
    if record is None:
        raise ModelLoadError(f"{index_uri}: alias '{alias}' names version {version_id[:80]}, which has no record")
    if not isinstance(record, dict):
        raise ModelLoadError(f"{index_uri}: versions.{version_id[:80]} must be an object, got {type(record).__name__}")
    path = record.get("path") or version_dir(version_id)
    return contained(root, path, index_uri, f"versions.{version_id[:80]}.path"), alias


def _object_field(document: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelLoadError(f"{where}: {name} must be an object, got {type(value).__name__}")
    return value


def validate_metadata(metadata: object, where: str) -> dict[str, Any]:
    """The keys the service relies on, checked once at start-up with the key's name in the message."""
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{where}: expected a JSON object")
    missing = [key for key in _REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ModelLoadError(f"{where}: missing key(s) {', '.join(missing)} (see docs/CONTRACTS.md)")
    names = metadata["class_names"]
    if not (isinstance(names, list) and len(names) == 10 and all(isinstance(n, str) for n in names)):
        raise ModelLoadError(f"{where}: class_names must be a list of 10 strings")
    if not isinstance(metadata["input"], dict) or not isinstance(metadata["input"].get("name"), str):
        raise ModelLoadError(f'{where}: input.name must name the model\'s input tensor (e.g. "pixels")')
    return metadata


def _load_samples(data: bytes, where: str) -> SampleImages:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            images = np.asarray(archive["images"])
            labels = np.asarray(archive["labels"]) if "labels" in archive.files else None
    except (KeyError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{where}: expected an .npz with 'images' uint8 [K,28,28] ({exc})") from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) == 0:
        raise ModelLoadError(
            f"{where}: 'images' must be uint8 [K,28,28] with K >= 1, got {images.dtype} {list(images.shape)}"
        )
    if labels is not None and labels.shape != (len(images),):
        raise ModelLoadError(f"{where}: 'labels' must have one entry per image")
    return SampleImages(images, labels)


def load_bundle(uri: str, cache_dir: str | None = None) -> ModelBundle:
    """Resolve `uri`, read metadata and the optional samples, and locate the serving artifact (downloading it into
    `cache_dir` when it is on GCS; default: a directory under SERVICE_STATE_DIR or TMPDIR); ModelLoadError if
    unusable."""
    reader = _Reader()
    version_dir, alias = resolve_version_dir(uri, reader)
    meta_uri = join(version_dir, METADATA_FILE)
    try:
        raw_metadata = reader.read(meta_uri)
    except _NotFound:
        raise ModelLoadError(
            f"{version_dir} is not a model directory: {METADATA_FILE} is missing "
            "(expected model.onnx + metadata.json, as `python -m trainer export` writes)"
        ) from None
    try:
        parsed = json.loads(raw_metadata)
    except ValueError as exc:
        raise ModelLoadError(f"{meta_uri}: not valid JSON ({exc})") from None
    metadata = validate_metadata(parsed, meta_uri)
    artifact = metadata.get("serving_artifact")
    artifact = DEFAULT_ARTIFACT if artifact is None else artifact
    artifact_uri = contained(version_dir, artifact, meta_uri, "serving_artifact")
    if not artifact.endswith(".onnx"):
        raise ModelLoadError(
            f"{meta_uri}: serving_artifact {artifact!r} is not an ONNX file; "
            "this service runs ONNX Runtime and needs model.onnx"
        )
    try:
        model_path = reader.local_copy(artifact_uri, cache_dir)
    except _NotFound:
        raise ModelLoadError(f"{artifact_uri} is missing; re-run the export step") from None
    try:
        samples = _load_samples(reader.read(join(version_dir, SAMPLES_FILE)), join(version_dir, SAMPLES_FILE))
    except _NotFound:
        samples = None
    return ModelBundle(uri, version_dir, alias, metadata, model_path, samples)
