"""A verified model version: its metadata checked, every file it reads checked against its recorded SHA-256.

Contract (docs/CONTRACTS.md): a model version directory holds model.onnx and metadata.json (and optionally
samples.npz, a few test images for the page). At start-up everything is read once, in the gunicorn master, so a
gs:// model is downloaded once and a missing model stops start-up with one clear message; later versions are read
by each worker's ModelSlot (service/versions.py). Why every file is checked against its recorded SHA-256 (the
registry record's `files`, else metadata.json's): a truncated upload or an altered object must not serve
predictions the registry's metrics do not describe.
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

from contracts.artifact_speed import INT8, auto_choice, cpu_model
from contracts.layout import REGISTRY_INDEX, ModelFiles
from service.gcs import GCS_SCHEME
from service.model_errors import ModelLoadError, ModelReadError, ModelRefused, ObjectNotFound
from service.model_reader import ModelReader, contained, join, sha256_of
from service.model_reference import Resolved, resolve, split_reference

METADATA_FILE, SAMPLES_FILE, DEFAULT_ARTIFACT = ModelFiles.METADATA, ModelFiles.SAMPLES, ModelFiles.ONNX
ARTIFACT_CHOICES = ("float", "int8")
_REQUIRED_KEYS = ("model_version", "class_names", "input")
log = logging.getLogger("service")


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
    `cache_dir` when it is on GCS and `download`; default: a directory under TMPDIR).
    Every file read is checked against its recorded SHA-256; ModelLoadError (ModelRefused) if unusable."""
    reader = ModelReader()
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
    reader: ModelReader | None = None,
    cache_dir: str | None = None,
    *,
    artifact_preference: str = "float",
    require_digests: bool = False,
    download: bool = True,
) -> ModelBundle:
    """load_bundle for an already resolved reference (what a poll of the registry found)."""
    reader = reader or ModelReader()
    version_dir = resolved.version_dir
    meta_uri = join(version_dir, METADATA_FILE)
    try:
        raw_metadata = reader.read(meta_uri)
    except ObjectNotFound:
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
    except ObjectNotFound:
        expected = f" (recorded sha256 {artifact_sha256})" if artifact_sha256 else ""
        raise ModelRefused(f"{artifact_uri} is missing{expected}; re-run the export step", "missing_file") from None
    samples_uri = join(version_dir, SAMPLES_FILE)
    try:
        raw_samples: bytes | None = reader.read(samples_uri)
    except ObjectNotFound:
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
def verified_artifact(bundle: ModelBundle, reader: ModelReader | None = None) -> Iterator[str]:
    """A path to the serving artifact whose bytes were just checked against the recorded digest, valid inside
    the block: the session is built from exactly the bytes that were hashed.

    Why a file and not bytes: ONNX Runtime builds a session from a path in a quarter of the time, mostly without
    the GIL (requests keep flowing during a swap) and with ~7 MB less peak memory for the demo model. The file is
    held open and read through /proc/self/fd, so replacing it after the check cannot change what loads; a gs://
    artifact is streamed into a scratch file deleted when the block ends (nothing stays on an in-memory disk)."""
    reader = reader or ModelReader()
    uri, path = bundle.model_path, bundle.model_path
    if uri.startswith(GCS_SCHEME):
        fh = cast(BinaryIO, tempfile.NamedTemporaryFile(dir=reader.scratch_dir, suffix=".onnx"))  # noqa: SIM115
        path = fh.name
        try:
            reader.download(uri, fh)
        except ObjectNotFound:
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
