"""Find and read the model the service serves: a version directory, local or on GCS, or a registry reference.

Contract (docs/CONTRACTS.md): a model reference is `<models-bucket-root>@<alias or version id>`, resolved through
`<root>/registry/index.json`; anything else is a model version directory holding model.onnx and metadata.json
(and optionally samples.npz, a few test images for the page). At start-up everything is read once, in the gunicorn
master, so a gs:// model is downloaded once and a missing model stops start-up with one clear message; later
versions are read by each worker's ModelSlot (service/versions.py). The serving artifact stays a file (a gs:// one
is streamed into a local file): sessions are built from a path, so no copy of the model's bytes sits in memory.
Why every file is checked against its recorded SHA-256 (the registry record's `files`, else metadata.json's): a
truncated upload or an altered object must not serve predictions the registry's metrics do not describe.
Why every name read from a file is checked: a registry record's `path` and a metadata `serving_artifact` come
from the bucket, and must not steer a read outside it (an absolute name, `..`); a malformed index or metadata
names the file and the field at fault, like every other load error.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from contracts import registry_index
from contracts.artifact_speed import INT8, auto_choice, cpu_model
from contracts.layout import REGISTRY_INDEX, ModelFiles, parse_model_reference
from contracts.registry_index import RegistryIndex
from service.gcs import GCS_SCHEME, GcsError, GcsNotFound, GcsReader

METADATA_FILE, SAMPLES_FILE, DEFAULT_ARTIFACT = ModelFiles.METADATA, ModelFiles.SAMPLES, ModelFiles.ONNX
ARTIFACT_CHOICES = ("float", "int8")
_REQUIRED_KEYS = ("model_version", "class_names", "input")
log = logging.getLogger("service")


class ModelLoadError(Exception):
    """The model could not be found, read or validated; the message says where and what to do."""


class _NotFound(ModelLoadError):
    pass


class NoModelPromoted(ModelLoadError):
    """The registry has no version under the alias yet (or no index at all): the service can wait for one."""


class ModelReadError(ModelLoadError):
    """Reading failed for a reason that may pass (a GCS outage, a timeout): worth trying again later."""


class ModelRefused(ModelLoadError):
    """The version's files are not the ones recorded (or cannot be checked): it must not be served.

    `reason` is one of REFUSAL_REASONS, a closed set for the refused-versions metric."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


REFUSAL_REASONS = ("digest_mismatch", "missing_file", "no_digest", "invalid")


@dataclass(frozen=True)
class SampleImages:
    """A few labelled test images shipped in the model directory, for the page's 'random test image'."""

    images: np.ndarray  # uint8 [K, 28, 28]
    labels: np.ndarray | None  # int [K] or None


@dataclass(frozen=True)
class ModelBundle:
    """Everything read from the model directory; workers build their inference sessions from `model_path`.

    `artifact_sha256` is the digest the serving artifact must have (from the registry record or metadata.json),
    None when the version recorded none and REQUIRE_DIGESTS is off: `verified_artifact` checks it on the very
    file the session is built from."""

    requested_uri: str
    version_dir: str
    alias: str | None
    metadata: dict[str, Any]
    model_path: str  # a local file, or the gs:// object when it was not downloaded
    samples: SampleImages | None
    artifact: str = DEFAULT_ARTIFACT  # the file name that serves: model.onnx or model.int8.onnx
    artifact_sha256: str | None = None
    digests_from: str | None = None  # "registry record", "metadata.json" or None (unverified)
    version_id: str | None = None  # the registry's id (None for a plain directory)

    @property
    def version(self) -> str:
        return str(self.metadata["model_version"])

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])

    @property
    def verified(self) -> bool:
        return self.artifact_sha256 is not None


def _scratch_dir() -> str:
    return os.environ.get("SERVICE_STATE_DIR") or os.environ.get("TMPDIR") or "/tmp"


def sha256_of(fh: BinaryIO) -> str:
    """SHA-256 of an open file from its start, 1 MiB at a time."""
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def join(base: str, *parts: str) -> str:
    if base.startswith(GCS_SCHEME):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


class _Reader:
    def __init__(self) -> None:
        self._gcs: GcsReader | None = None

    def local_copy(self, uri: str, cache_dir: str | None) -> str:
        """A local file holding the object: the file itself when local, else a download into cache_dir
        (streamed: the model never sits in memory whole)."""
        if not uri.startswith(GCS_SCHEME):
            if not Path(uri).is_file():
                raise _NotFound(f"{uri} does not exist")
            return uri
        if cache_dir is None:
            cache_dir = os.path.join(_scratch_dir(), f"fmnist-model-{os.getpid()}-{os.urandom(4).hex()}")
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, uri.rsplit("/", 1)[-1])
        try:
            with open(path, "wb") as fh:
                self.download(uri, fh)
        except BaseException:
            Path(path).unlink(missing_ok=True)
            raise
        return path

    def download(self, uri: str, sink: BinaryIO) -> None:
        try:
            self.gcs().download(uri, sink)
        except GcsNotFound:
            raise _NotFound(f"{uri} does not exist") from None
        except GcsError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc}") from None

    def gcs(self) -> GcsReader:
        self._gcs = self._gcs or GcsReader()
        return self._gcs

    def read(self, uri: str, generation: int | None = None) -> bytes:
        if uri.startswith(GCS_SCHEME):
            try:
                return self.gcs().read(uri, generation)
            except GcsNotFound:
                raise _NotFound(f"{uri} does not exist") from None
            except GcsError as exc:
                raise ModelReadError(f"cannot read {uri}: {exc}") from None
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise _NotFound(f"{uri} does not exist") from None
        except OSError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc.strerror}") from None

    def version_token(self, uri: str) -> object:
        """What changes whenever the object is rewritten, read cheaply: the GCS generation (one small metadata
        request) or the local file's inode, size and change times; None when it does not exist."""
        if uri.startswith(GCS_SCHEME):
            try:
                return self.gcs().generation(uri)
            except GcsNotFound:
                return None
            except GcsError as exc:
                raise ModelReadError(f"cannot read {uri}: {exc}") from None
        try:
            st = os.stat(uri)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc.strerror}") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def read_versioned(self, uri: str) -> tuple[object, bytes | None]:
        """(token, bytes) of one and the same version of the object; (None, None) when it does not exist.

        The token comes first and the read is pinned to it (GCS generation; locally the open file's own
        status), so a rewrite in between is seen as a change by the next poll instead of being missed."""
        if uri.startswith(GCS_SCHEME):
            token = self.version_token(uri)
            if token is None:
                return None, None
            try:
                return token, self.read(uri, int(str(token)))
            except _NotFound:  # replaced between the two requests: the next poll sees the new generation
                return None, None
        try:
            with open(uri, "rb") as fh:
                st = os.fstat(fh.fileno())
                return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), fh.read()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc.strerror}") from None


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


def resolve(uri: str, reader: _Reader | None = None) -> Resolved:
    """Resolve `uri` (a model directory, or `<root>@<alias or version id>`) by reading the registry index once."""
    reader = reader or _Reader()
    root, alias = split_reference(uri)
    if alias is None:
        return Resolved(uri, root, None)
    index_uri = join(root, REGISTRY_INDEX)
    try:
        data = reader.read(index_uri)
    except _NotFound:
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


def _recorded_digests(resolved: Resolved, metadata: dict[str, Any] | None, where: str) -> tuple[dict[str, str], str]:
    """The SHA-256 map to check files against, and where it came from: the registry record's `files` (it covers
    metadata.json too) when the version was reached through the registry, else metadata.json's `files`."""
    for source, holder in (("registry record", resolved.record), ("metadata.json", metadata)):
        if holder is None or holder.get("files") is None:
            continue
        files = holder["files"]
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in files.items()
        ):
            raise ModelRefused(f"{where}: the {source}'s files must map file names to SHA-256 hex digests", "invalid")
        return files, source
    return {}, ""


def check_digest(uri: str, name: str, data: bytes, digests: dict[str, str], source: str) -> str:
    """The file's recorded digest, after checking `data` against it; ModelRefused naming the file and both digests."""
    expected = digests.get(name)
    if expected is None:
        raise ModelRefused(
            f"{uri} has no SHA-256 in the {source} (it lists {', '.join(sorted(digests)) or 'nothing'}); "
            "refused: a file the service reads must be recorded. Register the version again",
            "no_digest",
        )
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise ModelRefused(
            f"{uri} was changed, truncated or damaged: sha256 {found} ({len(data):,} bytes), the {source} records "
            f"{expected}. Refused; restore the file or register the model again",
            "digest_mismatch",
        )
    return expected


def _choose_artifact(metadata: dict[str, Any], preference: str) -> tuple[object, str]:
    """(file name, metadata field) to serve: int8_artifact when int8 is asked for and the export's gate passed it
    (the field is set only then), or for "auto" when the export also measured it faster on this CPU; else
    serving_artifact (default model.onnx)."""
    artifact = metadata.get("serving_artifact")
    artifact = DEFAULT_ARTIFACT if artifact is None else artifact
    if preference == "auto":  # int8 where the export measured it faster on this CPU (contracts/artifact_speed.py)
        if auto_choice(metadata, cpu_model())[0] == INT8:
            return metadata["int8_artifact"], "int8_artifact"
        return artifact, "serving_artifact"
    if preference == "int8":
        int8 = metadata.get("int8_artifact")
        if int8 is not None:
            return int8, "int8_artifact"
        log.warning(
            "MODEL_ARTIFACT=int8 but model %s has no int8 artifact (metadata int8_artifact is unset: it was not "
            "exported or did not pass its accuracy gate); serving the float artifact %s",
            metadata.get("model_version"),
            artifact,
        )
    return artifact, "serving_artifact"


def load_bundle(
    uri: str,
    cache_dir: str | None = None,
    *,
    artifact_preference: str = "float",
    require_digests: bool = False,
    download: bool = True,
) -> ModelBundle:
    """Resolve `uri`, read metadata and the optional samples, and locate the serving artifact (downloading it into
    `cache_dir` when it is on GCS and `download`; default: a directory under SERVICE_STATE_DIR or TMPDIR).
    Every file read is checked against its recorded SHA-256; ModelLoadError (ModelRefused) if unusable."""
    reader = _Reader()
    return load_resolved(
        resolve(uri, reader),
        reader,
        cache_dir,
        artifact_preference=artifact_preference,
        require_digests=require_digests,
        download=download,
    )


def load_resolved(
    resolved: Resolved,
    reader: _Reader | None = None,
    cache_dir: str | None = None,
    *,
    artifact_preference: str = "float",
    require_digests: bool = False,
    download: bool = True,
) -> ModelBundle:
    """load_bundle for an already resolved reference (what a poll of the registry found)."""
    reader = reader or _Reader()
    version_dir = resolved.version_dir
    meta_uri = join(version_dir, METADATA_FILE)
    try:
        raw_metadata = reader.read(meta_uri)
    except _NotFound:
        raise ModelRefused(
            f"{version_dir} is not a model directory: {METADATA_FILE} is missing "
            "(expected model.onnx + metadata.json, as `python -m trainer export` writes)",
            "missing_file",
        ) from None
    digests, source = _recorded_digests(resolved, None, _index_uri(resolved))
    if digests:
        check_digest(meta_uri, METADATA_FILE, raw_metadata, digests, source)
    try:
        parsed = json.loads(raw_metadata)
    except ValueError as exc:
        raise ModelRefused(f"{meta_uri}: not valid JSON ({exc})", "invalid") from None
    try:
        metadata = validate_metadata(parsed, meta_uri)
    except ModelLoadError as exc:
        raise ModelRefused(str(exc), "invalid") from None
    if not digests:
        digests, source = _recorded_digests(resolved, metadata, meta_uri)
    if not digests and require_digests:
        raise ModelRefused(
            f"{version_dir}: neither the registry record nor {METADATA_FILE} records SHA-256 digests (exported "
            "before digests were recorded), and REQUIRE_DIGESTS is on: refused. Export and register it again, or "
            "set REQUIRE_DIGESTS=false to serve it unverified",
            "no_digest",
        )
    name, field = _choose_artifact(metadata, artifact_preference)
    try:
        artifact_uri = contained(version_dir, name, meta_uri, field)
    except ModelLoadError as exc:
        raise ModelRefused(str(exc), "invalid") from None
    artifact = str(name)
    if not artifact.endswith(".onnx"):
        raise ModelRefused(
            f"{meta_uri}: {field} {artifact!r} is not an ONNX file; "
            "this service runs ONNX Runtime and needs model.onnx",
            "invalid",
        )
    artifact_sha256 = None
    if digests:
        artifact_sha256 = digests.get(artifact)
        if artifact_sha256 is None:
            check_digest(artifact_uri, artifact, b"", digests, source)  # raises: no recorded digest
    try:
        if not download:
            model_path = artifact_uri  # verified_artifact reads (and checks) it when the session is built
        else:  # checked here too, so a damaged artifact stops start-up in the gunicorn master, once
            model_path = reader.local_copy(artifact_uri, cache_dir)
            if artifact_sha256 is not None:
                try:
                    with open(model_path, "rb") as fh:
                        _check_file(artifact_uri, artifact, fh, artifact_sha256, source)
                except ModelRefused:
                    if model_path != artifact_uri:  # a download that is not the recorded file is not kept
                        Path(model_path).unlink(missing_ok=True)
                    raise
    except _NotFound:
        expected = f" (recorded sha256 {artifact_sha256})" if artifact_sha256 else ""
        raise ModelRefused(f"{artifact_uri} is missing{expected}; re-run the export step", "missing_file") from None
    samples_uri = join(version_dir, SAMPLES_FILE)
    try:
        raw_samples: bytes | None = reader.read(samples_uri)
    except _NotFound:
        raw_samples = None
    samples = None
    if raw_samples is not None:
        if digests:
            check_digest(samples_uri, SAMPLES_FILE, raw_samples, digests, source)
        try:
            samples = _load_samples(raw_samples, samples_uri)
        except ModelLoadError as exc:
            raise ModelRefused(str(exc), "invalid") from None
    if not digests:
        log.warning(
            "model %s is served unverified: %s records no SHA-256 digests (an export from before digests were "
            "recorded); set REQUIRE_DIGESTS=true to refuse such versions",
            metadata["model_version"],
            version_dir,
        )
    return ModelBundle(
        resolved.uri,
        version_dir,
        resolved.alias,
        metadata,
        model_path,
        samples,
        artifact,
        artifact_sha256,
        source or None,
        resolved.version_id,
    )


def _index_uri(resolved: Resolved) -> str:
    return join(split_reference(resolved.uri)[0], REGISTRY_INDEX)


def _check_file(uri: str, name: str, fh: BinaryIO, expected: str, source: str) -> None:
    found, size = sha256_of(fh), fh.seek(0, os.SEEK_END)
    if found != expected:
        raise ModelRefused(
            f"{uri} was changed, truncated or damaged: sha256 {found} ({size:,} bytes), the {source} records "
            f"{expected}. Refused; restore the file or register the model again",
            "digest_mismatch",
        )


@contextmanager
def verified_artifact(bundle: ModelBundle, reader: _Reader | None = None) -> Iterator[str]:
    """A path to the serving artifact whose bytes were just checked against the recorded digest, valid inside
    the block: the session is built from exactly the bytes that were hashed.

    Why a file and not bytes: ONNX Runtime builds a session from a path in a quarter of the time, mostly without
    the GIL (requests keep flowing during a swap) and with ~7 MB less peak memory for the demo model. The file is
    held open and read through /proc/self/fd, so replacing it after the check cannot change what loads; a gs://
    artifact is streamed into a scratch file deleted when the block ends (nothing stays on an in-memory disk)."""
    reader = reader or _Reader()
    uri, path = bundle.model_path, bundle.model_path
    if uri.startswith(GCS_SCHEME):
        fh = cast(BinaryIO, tempfile.NamedTemporaryFile(dir=_scratch_dir(), suffix=".onnx"))  # noqa: SIM115
        path = fh.name
        try:
            reader.download(uri, fh)
        except _NotFound:
            fh.close()
            expected = f" (recorded sha256 {bundle.artifact_sha256})" if bundle.artifact_sha256 else ""
            raise ModelRefused(f"{uri} is missing{expected}; re-run the export step", "missing_file") from None
        except BaseException:
            fh.close()
            raise
        fh.flush()
    else:
        try:
            fh = open(uri, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            expected = f" (recorded sha256 {bundle.artifact_sha256})" if bundle.artifact_sha256 else ""
            raise ModelRefused(f"{uri} is missing{expected}; re-run the export step", "missing_file") from None
        except OSError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc.strerror}") from None
    with fh:
        if bundle.artifact_sha256 is not None:
            _check_file(uri, bundle.artifact, fh, bundle.artifact_sha256, bundle.digests_from or "record")
        by_fd = f"/proc/self/fd/{fh.fileno()}"
        yield by_fd if os.path.exists(by_fd) else path
