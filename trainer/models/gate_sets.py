"""What the paired gate (trainer/models/gate.py) scores: the pinned official test set, the candidate's own test
split when it is new, and both registered models' ONNX files.

Why the official test set is found by its content and not by a manifest: manifests are written by ingest from
whatever landed under raw/, so a manifest's word "official" is the uploader's word. Here every dataset version's
test files are read and their decompressed content MD5s compared with the ones Zalando published
(trainer/data/idx.py PUBLISHED): only the real 10,000 test images pass, whoever uploaded them.
Why the models are checked against their registry digests before scoring: the gate must score the bytes that
will serve.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

import storage
from contracts.dataset import IDX_FILE_NAMES
from contracts.layout import DATASET_DIR, MANIFEST_FILE, ModelFiles
from contracts.registry_index import RegistryIndex, VersionRecord
from trainer.data import idx
from trainer.data.dataset import load_dataset
from trainer.errors import DatasetError, GateRefused, ModelDirError
from trainer.models.gate import GateReport, GateRules, GateSet, checked_labels, decide
from trainer.models.model_dir import onnx_session, verify_digests

OFFICIAL = "official test set"
REPORTS_DIR = "registry/gate-reports"  # in the models bucket: only the promoter writes registry/


def official_test_set(settings) -> tuple[GateSet, np.ndarray] | None:
    """(gate set, images) of the first dataset version whose test files are the published ones; None if none."""
    root = storage.join(settings.datasets_bucket, DATASET_DIR, "versions")
    manifests = [u for u in storage.list_uris(root) if u.endswith("/" + MANIFEST_FILE)]
    for manifest_uri in sorted(manifests, reverse=True):  # a fixed order (ids are content hashes, not dates)
        base = manifest_uri[: -len(MANIFEST_FILE) - 1]
        files = {role: storage.join(base, IDX_FILE_NAMES[role]) for role in ("test_images", "test_labels")}
        try:
            parsed = {role: idx.read_idx_file(role, storage.read_bytes(uri), uri) for role, uri in files.items()}
        except (idx.IdxError, storage.StorageError):
            continue
        if all(f.official for f in parsed.values()):
            version = base.rsplit("/", 1)[-1]
            gate_set = GateSet(
                OFFICIAL,
                parsed["test_labels"].array.astype(np.int64),
                f"dataset version {version}; content MD5s equal the published ones "
                f"({parsed['test_images'].content_md5}, {parsed['test_labels'].content_md5})",
            )
            return gate_set, parsed["test_images"].array
    return None


def gate_sets(
    settings, candidate_dataset: str | None, champion_dataset: str | None
) -> list[tuple[GateSet, np.ndarray]]:
    """The pinned official test set (required unless registry.require_pinned_gate_set is off), plus the candidate's
    test split when the candidate was trained on another dataset version than the champion."""
    sets = []
    official = official_test_set(settings)
    if official is not None:
        sets.append(official)
    elif settings.registry.require_pinned_gate_set:
        raise GateRefused(
            "no pinned gate set: no dataset version in "
            f"{storage.join(settings.datasets_bucket, DATASET_DIR)} holds the official Fashion-MNIST test files "
            "(checked by their published MD5s). Ingest them once (python -m trainer ingest --source debian or the "
            "canonical URL), or set registry.require_pinned_gate_set: false to gate on the candidate's split alone"
        )
    if candidate_dataset and (candidate_dataset != champion_dataset or official is None):
        try:
            dataset = load_dataset(settings, candidate_dataset)
        except DatasetError as exc:
            raise GateRefused(f"the candidate's test split cannot be read for the gate: {exc}") from None
        if not (official is not None and dataset.manifest.get("official")):
            sets.append(
                (
                    GateSet(
                        f"candidate test split {candidate_dataset}",
                        dataset.y_test.astype(np.int64),
                        f"dataset version {candidate_dataset}, verified against its manifest's hashes",
                    ),
                    dataset.x_test,
                )
            )
    for gate_set, images in sets:  # before any model scores them or any report is written
        try:
            checked_labels(gate_set, images=len(images))
        except ValueError as exc:
            raise GateRefused(
                f"the gate cannot use its sets: {exc}; re-ingest that data (`python -m trainer ingest` checks every "
                "label and count)"
            ) from None
    return sets


def score_version(registry, version: str, record: VersionRecord, images: list[np.ndarray]) -> list[np.ndarray]:
    """Probabilities of a registered version's model.onnx on each image array, after checking its digests."""
    files = record.files or {}
    if ModelFiles.ONNX not in files:
        raise GateRefused(
            f"version {version} has no recorded {ModelFiles.ONNX} (an AutoML model or an export from before "
            "digests): the paired gate cannot score it"
        )
    directory = registry.version_uri(version)
    try:
        verify_digests(directory, {ModelFiles.ONNX: files[ModelFiles.ONNX]})
    except ModelDirError as exc:
        raise GateRefused(f"version {version} cannot be gated: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = storage.download_file(storage.join(directory, ModelFiles.ONNX), Path(tmp) / ModelFiles.ONNX)
        session = onnx_session(path)
        name = session.get_inputs()[0].name  # the first output, as the service reads it (service/runtime.py)
        return [
            np.concatenate(
                [session.run(None, {name: x[i : i + 1000].astype(np.float32)})[0] for i in range(0, len(x), 1000)]
            )
            for x in images
        ]


def report_base(root: str, candidate: str, champion: str) -> str:
    """Where the gate's report of `candidate` against `champion` lives, without its .json/.md suffix."""
    return storage.join(root, REPORTS_DIR, f"{candidate}-vs-{champion}")


def read_report(root: str, candidate: str, champion: str) -> dict | None:
    """The JSON gate report of that pair, or None when the gate did not compare them (no champion, AutoML)."""
    data = storage.read_versioned(report_base(root, candidate, champion) + ".json").data
    return json.loads(data) if data else None


class PairedGate:
    """The gate `ModelRegistry.promote` runs when a champion exists: score both, decide, write the report."""

    def __init__(self, settings):
        self.settings = settings
        registry = settings.registry
        self.rules = GateRules(registry.gate_alpha, registry.gate_recall_margin, registry.gate_calibration_tolerance)

    def __call__(self, registry, candidate: str, champion: str, index: RegistryIndex) -> GateReport | None:
        """The report, or None when either version records no model.onnx (an AutoML model served by Vertex AI):
        such a version cannot serve from the registry (the service refuses a file without a digest), so there is
        nothing to score and the registry's stored-accuracy gate applies."""
        records = index.versions
        if any(ModelFiles.ONNX not in (records[v].files or {}) for v in (candidate, champion)):
            return None
        sets = gate_sets(self.settings, records[candidate].dataset_version, records[champion].dataset_version)
        images = [x for _, x in sets]
        scored_candidate = score_version(registry, candidate, records[candidate], images)
        scored_champion = score_version(registry, champion, records[champion], images)
        report = decide(
            candidate,
            champion,
            [(s, a, b) for (s, _), a, b in zip(sets, scored_candidate, scored_champion, strict=True)],
            self.rules,
        )
        base = report_base(registry.root, candidate, champion)
        storage.write_text(base + ".json", report.to_json(), content_type="application/json")
        storage.write_text(base + ".md", report.to_markdown(), content_type="text/markdown; charset=utf-8")
        return report
