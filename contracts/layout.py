"""The bucket layout: where datasets, registry and model directories live, and what a model directory holds.

Why here: the trainer writes these paths, the service reads them, the lifecycle reports from them; a file name
that differs between two of them breaks serving without any error at write time. Paths are relative to a bucket
root (a local directory or a gs:// bucket); docs/CONTRACTS.md draws the tree.
"""

from __future__ import annotations

import re

BUCKET_KINDS = ("dev", "datasets", "models")
DEFAULT_STORAGE_ROOT = ".mlops"  # the local target's buckets are directories under it

# ---- datasets bucket ---------------------------------------------------------------------------------------------
DATASET_DIR = "fashion-mnist"  # <datasets>/fashion-mnist/{LATEST, versions/<version>/...}
LATEST_FILE = "LATEST"
MANIFEST_FILE = "manifest.json"  # written last: its presence means the version is complete
FEATURES_FILE = "features.parquet"
# <datasets>/raw/_COMMIT: written after the last raw file of an upload. Its creation is the new-data event (one per
# completed upload, never one per file); nothing else under raw/ starts a run.
RAW_COMMIT_MARKER = "_COMMIT"

# ---- models bucket: the registry ---------------------------------------------------------------------------------
REGISTRY_INDEX = "registry/index.json"
REGISTRY_VERSIONS = "registry/versions"
# a copy of each index the promoter signed, by sequence: `trainer registry restore` puts the newest back when the
# index was written by someone else (trainer/models/registry.py)
REGISTRY_HISTORY = "registry/history"
CHAMPION, CANDIDATE = "champion", "candidate"


class ModelFiles:
    """The files of one model directory (what train, evaluate and export write; the service reads three)."""

    KERAS = "model.keras"
    TRAINING = "training.json"  # written last by train: the directory is complete
    ONNX = "model.onnx"  # the serving artifact
    ONNX_INT8 = "model.int8.onnx"  # its int8 quantization, present only when it agrees with the float model
    METADATA = "metadata.json"
    SAMPLES = "samples.npz"  # a few test images for the service's page
    EVALUATION = "evaluation.json"
    CONFUSION_JSON = "confusion_matrix.json"
    CONFUSION_PNG = "confusion_matrix.png"


# The serving artifact's tensors: raw pixels float32 [N, 28, 28] in, softmax [N, 10] out.
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"

# ---- model references --------------------------------------------------------------------------------------------
_ALIAS = re.compile(r"[A-Za-z0-9_.-]+")


def model_reference(models_root: str, alias: str = CHAMPION) -> str:
    """`<models bucket root>@<alias>`: '@' cannot occur in a bucket name, so the form is unambiguous."""
    return f"{models_root}@{alias}"


def parse_model_reference(uri: str) -> tuple[str, str] | None:
    """(models root, alias) for a model reference, None for anything else (a model directory)."""
    root, sep, alias = uri.rpartition("@")
    if not sep or not root or not _ALIAS.fullmatch(alias):
        return None
    return root, alias


def history_name(sequence: int) -> str:
    """Where the promoter keeps its copy of the index it wrote with `sequence` (zero-padded: names sort by it)."""
    return f"{REGISTRY_HISTORY}/{sequence:012d}.json"


def version_dir(version: str) -> str:
    """A registered version's directory, relative to the models bucket."""
    return f"{REGISTRY_VERSIONS}/{version}"
