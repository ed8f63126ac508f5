"""`python -m trainer export-images`: a dataset version as PNG files plus a Vertex AI image import file.

Why: AutoML image training reads a managed ImageDataset, which is imported from image files and a JSON Lines
file. The `ml_use` label pins each image to training/validation/test exactly as the custom trainer splits them
(trainer.data.splits), so AutoML is measured on the same test set as every custom model.
Deterministic (same version -> byte-identical files) and idempotent (an existing export is not redone).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

import storage
from contracts.dataset import CLASS_NAMES
from trainer.data.splits import validation_mask

ML_USE_LABEL = "aiplatform.googleapis.com/ml_use"
IMPORT_FILE = "import.jsonl"  # written last: its presence marks a complete export


class ExportMismatch(RuntimeError):
    """A PNG did not decode back to the original pixels."""


def encode_png(image: np.ndarray) -> bytes:
    """Lossless 8-bit grayscale PNG; Pillow writes no timestamp, so equal pixels give equal bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"))


def ml_use_splits(y_train: np.ndarray, y_test: np.ndarray, fraction: float, seed: int) -> list[tuple[str, str, int]]:
    """(ml_use, source split, index) for every image, in a fixed order."""
    val = validation_mask(y_train, fraction, seed)
    rows = [("validation" if val[i] else "training", "train", i) for i in range(len(y_train))]
    rows += [("test", "test", i) for i in range(len(y_test))]
    return rows


def images_prefix(settings, version: str) -> str:
    return storage.join(settings.datasets_bucket, "fashion-mnist", "versions", version, "images")


def _encode_chunk(staging: str, final_prefix: str, rows: list, images: np.ndarray, labels: np.ndarray):
    """Encode, verify and write one chunk of images; returns its import-file lines and PNG hashes, in order."""
    lines, hashes = [], []
    for (ml_use, split, index), image, label in zip(rows, images, labels, strict=True):
        png = encode_png(image)
        if not np.array_equal(decode_png(png), image):
            raise ExportMismatch(f"{split} image {index}: PNG does not decode to the original pixels")
        rel = f"{ml_use}/{split}-{index:05d}.png"
        Path(staging, rel).write_bytes(png)
        hashes.append(hashlib.sha256(png).digest())
        lines.append(
            json.dumps(
                {
                    "imageGcsUri": storage.join(final_prefix, rel),
                    "classificationAnnotation": {"displayName": CLASS_NAMES[int(label)]},
                    "dataItemResourceLabels": {ML_USE_LABEL: ml_use},
                },
                sort_keys=True,
            )
        )
    return lines, hashes


def build_export(dataset, settings, staging: Path, workers: int | None = None) -> dict:
    """Write PNGs + import file into a local staging dir, in parallel; every PNG is checked to decode exactly."""
    from concurrent.futures import ProcessPoolExecutor

    final_prefix = images_prefix(settings, dataset.version)
    rows = ml_use_splits(dataset.y_train, dataset.y_test, settings.training.validation_fraction, settings.training.seed)
    for ml_use in ("training", "validation", "test"):
        (staging / ml_use).mkdir(parents=True, exist_ok=True)
    images = np.concatenate([dataset.x_train, dataset.x_test])
    labels = np.concatenate([dataset.y_train, dataset.y_test])
    workers = workers or (min(4, os.cpu_count() or 1) if len(rows) >= 5000 else 1)
    if workers == 1:  # small exports: a process pool costs more than it saves
        results = [_encode_chunk(str(staging), final_prefix, rows, images, labels)]
    else:
        bounds = np.linspace(0, len(rows), workers * 4 + 1).astype(int)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(_encode_chunk, str(staging), final_prefix, rows[a:b], images[a:b], labels[a:b])
                for a, b in itertools.pairwise(bounds)
            ]
            results = [f.result() for f in futures]
    lines = [line for chunk_lines, _ in results for line in chunk_lines]
    digest = hashlib.sha256(b"".join(h for _, chunk_hashes in results for h in chunk_hashes))
    counts = {use: sum(1 for r in rows if r[0] == use) for use in ("training", "validation", "test")}
    summary = {
        "dataset_version": dataset.version,
        "counts": counts,
        "png_sha256": digest.hexdigest(),
        "validation_fraction": settings.training.validation_fraction,
        "seed": settings.training.seed,
    }
    (staging / "export.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (staging / IMPORT_FILE).write_text("\n".join(lines) + "\n")
    return summary


def _commit_local(staging: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # an interrupted earlier export without its import file: replace it whole
        shutil.rmtree(final)
    os.replace(staging, final)  # one rename: readers see no export or the whole export


def _commit_gcs(staging: Path, final_prefix: str) -> None:
    from google.cloud.storage import transfer_manager

    bucket_name, prefix = storage.split_gcs(final_prefix)
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file() and p.name != IMPORT_FILE)
    bucket = storage.gcs_client().bucket(bucket_name)
    results = transfer_manager.upload_many_from_filenames(
        bucket,
        files,
        source_directory=str(staging),
        blob_name_prefix=prefix.rstrip("/") + "/",
        max_workers=8,
        worker_type=transfer_manager.THREAD,
    )
    failed = [name for name, result in zip(files, results, strict=True) if isinstance(result, Exception)]
    if failed:
        raise storage.StorageError(f"{final_prefix}: {len(failed)} uploads failed (first: {failed[0]}); run again")
    storage.upload_file(staging / IMPORT_FILE, storage.join(final_prefix, IMPORT_FILE))


def export_images(settings, version: str | None = None, *, log=print) -> tuple[str, dict, bool]:
    """Export one dataset version; returns (import file URI, summary, created). No-op when already exported."""
    from trainer.data.dataset import load_dataset

    dataset = load_dataset(settings, version)
    prefix = images_prefix(settings, dataset.version)
    import_uri = storage.join(prefix, IMPORT_FILE)
    if storage.exists(import_uri):
        summary = json.loads(storage.read_text(storage.join(prefix, "export.json")))
        log(f"dataset {dataset.version} is already exported as images: {import_uri}")
        return import_uri, summary, False
    start = time.perf_counter()
    if storage.is_gcs(prefix):
        staging = Path(tempfile.mkdtemp(prefix="fmnist-images-"))
    else:  # a sibling on the same filesystem, so the commit is one rename
        staging = Path(prefix).parent / f".images-staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
    try:
        summary = build_export(dataset, settings, staging)
        if storage.is_gcs(prefix):
            _commit_gcs(staging, prefix)
        else:
            _commit_local(staging, Path(prefix))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    total = sum(summary["counts"].values())
    log(
        f"exported {total} PNGs of dataset {dataset.version} in {time.perf_counter() - start:.1f} s: "
        f"{summary['counts']} -> {import_uri}"
    )
    return import_uri, summary, True


def add_arguments(parser) -> None:
    parser.add_argument("--version", help="dataset version (default: the latest ingested)")


def run(args, settings) -> int:
    export_images(settings, args.version)
    return 0
