"""Batch prediction: a PNG directory, a gs:// PNG prefix (the GCS emulator) and an IDX file scored with the champion
through the service's own loading, decoding and ONNX Runtime code, checked against the live service over HTTP;
and the Vertex AI batch prediction job request, bound to the installed SDK."""

import gzip
import inspect
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lifecycle.batch.batch_predict import BatchInputError, BatchScorer, read_source
from settings import load_config
from tests.service.model_factory import build_model_dir, build_registry, generated_images, upload_tree
from trainer.cloud.batch_prediction import build_batch_prediction
from trainer.errors import CommandError

REPO = Path(__file__).resolve().parents[2]
N = 150


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A models bucket with a champion, and the same N generated images as PNGs and as an IDX file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("batch")
    models = build_registry(root / "models", build_model_dir(root / "model", version="batch-v1"), version="batch-v1")
    images, _ = generated_images(N, seed=3)
    pngs = root / "pngs"
    pngs.mkdir()
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(pngs / f"img-{i:04d}.png")
    idx = root / "images-idx3-ubyte.gz"
    idx.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, N, 28, 28) + images.tobytes()))
    return root, models, images, pngs, idx


def batch_predict(*args):
    return subprocess.run(
        [sys.executable, "-m", "lifecycle", "batch-predict", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow  # ~11 s for the module with its live service, dealt first under -n 2
def test_png_directory_and_idx_file_give_the_same_predictions_as_jsonl_and_parquet(world, tmp_path):
    root, models, images, pngs, idx = world
    jsonl, parquet = tmp_path / "p.jsonl", tmp_path / "p.parquet"
    first = batch_predict(str(pngs), "--model", f"{models}@champion", "--output", str(jsonl), "--workers", "2")
    assert first.returncode == 0, first.stderr
    second = batch_predict(str(idx), "--model", f"{models}@champion", "--output", str(parquet), "--workers", "1")
    assert second.returncode == 0, second.stderr
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["image_id"] for r in rows] == [f"img-{i:04d}.png" for i in range(N)]
    assert {r["model_version"] for r in rows} == {"batch-v1"}
    assert all(len(r["probabilities"]) == 10 and abs(sum(r["probabilities"]) - 1) < 1e-4 for r in rows)
    table = pq.read_table(parquet).to_pylist()
    assert table[0]["image_id"] == "images-idx3-ubyte.gz:00000"
    assert [r["class_id"] for r in rows] == [r["class_id"] for r in table]
    assert "images/s scoring" in first.stdout


def test_the_batch_scorer_agrees_with_the_running_service_over_http(world):
    from lifecycle.client import HttpService
    from lifecycle.served import running_service

    _, models, images, _, _ = world
    with BatchScorer(f"{models}@champion", workers=1) as scorer:
        batch = scorer.score(images).argmax(axis=1)
        from_pngs = scorer.score_images(read_source(str(world[3]))).argmax(axis=1)  # decoded in the worker
    assert (from_pngs == batch).all()
    with running_service(f"{models}@champion", workers=1) as (base, _):
        served = HttpService(base).classes_bytes(images)
    assert (batch == served).all()


def test_a_gcs_prefix_of_pngs_is_read_like_a_directory(world, gcs_bucket):
    _, _, images, pngs, _ = world
    upload_tree(pngs, gcs_bucket, "incoming")
    remote = read_source(f"{gcs_bucket}/incoming")
    local = read_source(str(pngs))
    assert remote.ids == local.ids
    assert np.array_equal(remote.decoded(), images) and np.array_equal(local.decoded(), images)


def test_bad_sources_and_outputs_fail_with_what_is_accepted(world, tmp_path):
    _, models, _, pngs, _ = world
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError, match="no .png files"):
        read_source(str(tmp_path / "empty"))
    (tmp_path / "bad.idx").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(BatchInputError, match="bad.idx"):
        read_source(str(tmp_path / "bad.idx"))
    result = batch_predict(str(pngs), "--model", f"{models}@champion", "--output", str(tmp_path / "p.csv"))
    assert result.returncode == 1 and "use a .jsonl or .parquet name" in result.stderr
    assert not (tmp_path / "p.csv").exists()


# ---- Vertex AI batch prediction ---------------------------------------------------------------------------------


@pytest.fixture
def dev():
    return load_config("dev", environ={})


def test_a_png_prefix_becomes_a_file_list_job_on_the_serving_image_version(dev):
    uris = [f"gs://in/x/{i}.png" for i in range(3)]
    request = build_batch_prediction(dev, "v1", "gs://in/x", uris, display_name="fmnist-batch-v1-1", destination=None)
    create = request.create
    assert create["model_name"] == "projects/fmnist-mlops-dev/locations/europe-west4/models/fmnist-classifier@v1"
    assert create["instances_format"] == "file-list" and create["predictions_format"] == "jsonl"
    assert request.file_list == (
        "gs://fmnist-mlops-dev-dev/batch-predictions/fmnist-batch-v1-1/inputs.txt",
        "".join(u + "\n" for u in uris),
    )
    assert create["gcs_source"] == request.file_list[0]
    assert create["service_account"] == "fmnist-mlops-dev-service@fmnist-mlops-dev.iam.gserviceaccount.com"
    assert create["encryption_spec_key_name"] == dev.names.kms_key_name
    from google.cloud import aiplatform

    inspect.signature(aiplatform.BatchPredictionJob.create).bind(**create)


def test_a_jsonl_source_is_sent_as_is_and_an_idx_object_is_refused(dev):
    request = build_batch_prediction(
        dev, "v1", "gs://in/instances.jsonl", None, display_name="j", destination="gs://out/p"
    )
    assert request.create["instances_format"] == "jsonl" and request.file_list is None
    assert request.create["gcs_destination_prefix"] == "gs://out/p"
    with pytest.raises(CommandError, match="export-images"):
        build_batch_prediction(dev, "v1", "gs://in/t10k-images-idx3-ubyte.gz", None, display_name="j", destination=None)
    with pytest.raises(CommandError, match="gs:// only"):
        build_batch_prediction(dev, "v1", "/local/dir", [], display_name="j", destination=None)
