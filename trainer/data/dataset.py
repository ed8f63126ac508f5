"""Load a stored dataset version (what training, analysis and features read) and name its locations.

Why verify on load: a version is addressed by content, so its manifest's hashes say exactly which bytes training
saw; a changed or half-copied file must fail here, not show up as a puzzling accuracy drop.
Layout (contracts.layout): <datasets bucket>/fashion-mnist/versions/<version>/{four .gz, manifest.json, ...}
and <datasets bucket>/fashion-mnist/LATEST.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

import storage
from contracts.dataset import IDX_ROLES
from contracts.layout import DATASET_DIR, LATEST_FILE, MANIFEST_FILE
from trainer.data import idx
from trainer.errors import DatasetError


@dataclass
class Dataset:
    """One dataset version in memory: uint8 images [N, 28, 28] and uint8 labels [N] per split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    version: str
    manifest: dict[str, Any]

    @property
    def hash(self) -> str:
        return self.manifest["hash"]


def dataset_root(settings) -> str:
    return storage.join(settings.datasets_bucket, DATASET_DIR)


def version_uri(settings, version: str) -> str:
    return storage.join(dataset_root(settings), "versions", version)


def latest_version(settings) -> str:
    """The version LATEST names; DatasetError if nothing was ingested yet."""
    uri = storage.join(dataset_root(settings), LATEST_FILE)
    try:
        version = storage.read_text(uri).strip()
    except storage.NotFound:
        raise DatasetError(f"{uri}: no dataset ingested yet; run `python -m trainer ingest` first") from None
    except storage.StorageError as exc:
        raise DatasetError(f"cannot read {uri}: {exc}") from None
    if not version:
        raise DatasetError(f"{uri} is empty; run `python -m trainer ingest` to write it again")
    return version


def resolve_version(settings, version: str | None = None) -> str:
    return version or latest_version(settings)


def read_manifest(settings, version: str) -> dict[str, Any]:
    uri = storage.join(version_uri(settings, version), MANIFEST_FILE)
    try:
        return json.loads(storage.read_text(uri))
    except storage.NotFound:
        raise DatasetError(
            f"{uri}: dataset version {version} does not exist or is incomplete (no manifest); "
            "run `python -m trainer ingest`, or pick a version listed under "
            f"{storage.join(dataset_root(settings), 'versions')}"
        ) from None
    except storage.StorageError as exc:
        raise DatasetError(f"cannot read {uri}: {exc}") from None
    except ValueError as exc:
        raise DatasetError(f"{uri}: not valid JSON ({exc}); re-run `python -m trainer ingest`") from None


def load_dataset(settings, version: str | None = None) -> Dataset:
    """Read a version (default: LATEST) from the datasets bucket, check every file against its manifest hash."""
    version = resolve_version(settings, version)
    manifest = read_manifest(settings, version)
    base = version_uri(settings, version)
    arrays = {}
    for role in IDX_ROLES:
        try:
            entry = manifest["files"][role]
            uri = storage.join(base, entry["name"])
        except (KeyError, TypeError):
            raise DatasetError(
                f"{storage.join(base, MANIFEST_FILE)}: no entry for the {role} file; the manifest is not "
                "one ingest wrote. Delete the version directory and re-run `python -m trainer ingest`"
            ) from None
        try:
            data = storage.read_bytes(uri)
        except storage.StorageError as exc:
            raise DatasetError(
                f"dataset version {version} is damaged: {exc}; re-run `python -m trainer ingest`"
            ) from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DatasetError(
                f"{uri}: sha256 differs from {MANIFEST_FILE}; the stored file was changed or damaged. "
                f"Delete {base} and re-run `python -m trainer ingest`"
            )
        try:
            arrays[role] = idx.parse_idx(idx.gunzip(data, uri), uri, 3 if role.endswith("images") else 1)
        except idx.IdxError as exc:
            raise DatasetError(str(exc)) from None
    return Dataset(
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
        version=version,
        manifest=manifest,
    )
