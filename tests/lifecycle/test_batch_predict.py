"""Batch prediction: a PNG directory, a gs:// PNG prefix (the GCS emulator) and an IDX file scored with the champion
through the service's own loading, decoding and ONNX Runtime code, checked against the live service over HTTP;
and the Vertex AI batch prediction job request, bound to the installed SDK."""

import gzip
import inspect
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import storage
from contracts.dataset import CLASS_NAMES
from lifecycle.batch import batch_predict as bp
from lifecycle.batch.batch_predict import BatchInputError, BatchScorer, read_source
from settings import load_config
from tests.service.model_factory import build_registry, cached_model_dir, generated_images, upload_tree
from trainer.cloud.batch_prediction import build_batch_prediction
from trainer.errors import CommandError

REPO = Path(__file__).resolve().parents[2]
N = 150


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A models bucket with a champion, and the same N generated images as PNGs and as an IDX file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("batch")
    # trained once per TEST_MODEL_CACHE (`make mutate` runs these tests once per mutant), its version test-v1
    models = build_registry(root / "models", cached_model_dir(root / "model" / "test-v1"), version="test-v1")
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
    assert {r["model_version"] for r in rows} == {"test-v1"}
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
        assert len(scorer._pool._pool) == 1  # the workers asked for, not one per core
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
    assert remote.ids == local.ids == read_source(f"{gcs_bucket}/incoming/").ids  # with or without the slash
    assert np.array_equal(remote.decoded(), images) and np.array_equal(local.decoded(), images)


def test_a_gcs_prefix_with_a_folder_placeholder_and_a_trailing_x_is_still_a_prefix(world, gcs_bucket, monkeypatch):
    """The Cloud Console's "create folder" writes an empty `name/` object: with the slash, the source is the prefix,
    never that object read as an IDX file; and only slashes are trimmed from the prefix, not its last letters.
    fake-gcs-server drops such objects (a file system holds no `name/` file), so exists() answers as GCS would."""
    _, _, images, pngs, _ = world
    upload_tree(pngs, gcs_bucket, "scansX")
    real_exists = bp.storage.exists
    monkeypatch.setattr(bp.storage, "exists", lambda uri: uri.endswith("/") or real_exists(uri))
    local = read_source(str(pngs))
    for source in (f"{gcs_bucket}/scansX/", f"{gcs_bucket}/scansX//"):
        remote = read_source(source)
        assert remote.ids == local.ids, source
        assert np.array_equal(remote.decoded(), images)


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


# ---- exact, in-process (issue 27's batch-predict mutation group) -------------------------------------------------


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_command_in_process_writes_the_service_s_probabilities_and_prints_its_summary(
    world, gcs_bucket, capsys, monkeypatch
):
    from service.runtime import OnnxClassifier

    _, models, images, _, idx = world
    output = f"{gcs_bucket}/scored/p.jsonl"
    # main's clock: started, read, workers up, scoring starts, scoring ends, done
    ticks = iter([100.0, 101.5, 104.0, 104.25, 106.25, 107.75])

    class Clock:
        perf_counter = staticmethod(lambda: next(ticks))

    monkeypatch.setattr(bp, "time", Clock)
    assert bp.main([str(idx), "--model", f"{models}@champion", "--output", str(output), "--workers", "1"]) == 0
    assert capsys.readouterr().out == (
        f"scored {N} images with test-v1 on 1 workers: 75 images/s scoring (1.50 s reading, 2.50 s starting "
        f"workers); 7.75 s in all; predictions in {output}\n"
    )
    expected = OnnxClassifier(str(models / "registry/versions/test-v1/model.onnx"), "pixels").predict(
        images.astype(np.float32)
    )
    blob = storage.gcs_client().bucket(gcs_bucket[len("gs://") :]).get_blob("scored/p.jsonl")
    assert blob.content_type == "application/jsonl"
    rows = [json.loads(line) for line in storage.read_text(output).splitlines()]
    assert {(r["model_version"], r["class_name"] == CLASS_NAMES[r["class_id"]]) for r in rows} == {("test-v1", True)}
    assert [r["probabilities"] for r in rows] == [[round(float(p), 6) for p in row] for row in expected]
    assert [r["class_id"] for r in rows] == expected.argmax(axis=1).tolist()
    assert [r["image_id"] for r in rows] == [f"images-idx3-ubyte.gz:{i:05d}" for i in range(N)]


def test_the_command_s_errors_exit_1_with_the_problem(world, tmp_path, capsys):
    _, models, _, pngs, _ = world
    output = tmp_path / "p.jsonl"
    assert bp.main([str(pngs), "--env", "nowhere", "--output", str(output)]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert bp.main([str(pngs), "--model", str(tmp_path / "none"), "--output", str(output), "--workers", "1"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert bp.main([str(tmp_path / "gone"), "--model", f"{models}@champion", "--output", str(output)]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'gone'}: no such file or directory (give a PNG directory, a gs:// prefix or an IDX file)\n"
    )
    assert not output.exists()


def test_a_directory_s_pngs_are_found_at_any_depth_whatever_the_case_and_nothing_else(tmp_path):
    images, _ = generated_images(3, seed=5)
    (tmp_path / "sub").mkdir()
    (tmp_path / "dir.png").mkdir()  # a directory, not a file
    (tmp_path / "b.PNG").write_bytes(_png(images[0]))
    (tmp_path / "sub" / "a.png").write_bytes(_png(images[1]))
    (tmp_path / "c.png").write_bytes(_png(images[2]))
    (tmp_path / "notes.txt").write_text("not an image")
    found = read_source(str(tmp_path))
    assert found.ids == ["b.PNG", "c.png", "sub/a.png"] and found.pixels is None
    assert np.array_equal(found.decoded(), images[[0, 2, 1]]) and found.decoded().dtype == np.uint8


def test_a_gcs_idx_object_is_read_as_images_and_an_empty_prefix_is_refused(world, gcs_bucket):
    _, _, images, _, idx = world
    storage.write_bytes(f"{gcs_bucket}/data/t-images.gz", idx.read_bytes())
    found = read_source(f"{gcs_bucket}/data/t-images.gz")
    assert found.ids[:2] == ["t-images.gz:00000", "t-images.gz:00001"] and np.array_equal(found.pixels, images)
    with pytest.raises(BatchInputError) as refused:
        read_source(f"{gcs_bucket}/data/")
    assert str(refused.value) == f"{gcs_bucket}/data/: no .png objects under this prefix (and it is not an IDX object)"


def test_a_bad_png_is_named_by_its_index_in_the_whole_set(world):
    from lifecycle.batch.batch_predict import ImageSet, decode_pngs

    _, _, images, _, _ = world
    with pytest.raises(BatchInputError, match=r"^image 513: "):
        decode_pngs([_png(images[0]), b"not a png"], 512)
    assert ImageSet(["a"]).decoded().shape == (0, 28, 28)
    with pytest.raises(BatchInputError, match=r"^image 0: "):
        ImageSet(["a"], encoded=[b"not a png"]).decoded()


def test_the_scorer_keeps_the_order_across_chunks_and_names_a_bad_png_from_its_worker(world):
    from lifecycle.batch.batch_predict import CHUNK, ImageSet
    from service.runtime import OnnxClassifier

    _, models, images, _, _ = world
    many = np.concatenate([images] * 8)[: 2 * CHUNK + 7]
    expected = OnnxClassifier(str(models / "registry/versions/test-v1/model.onnx"), "pixels").predict(
        many.astype(np.float32)
    )
    blobs = [_png(p) for p in many]
    with BatchScorer(f"{models}@champion", workers=2) as scorer:
        assert np.allclose(scorer.score(many), expected, atol=1e-6)
        empty = scorer.score(many[:0])
        assert (empty.shape, empty.dtype) == ((0, 10), np.float32)
        assert scorer.score_images(ImageSet([])).shape == (0, 10)
        files = ImageSet([str(i) for i in range(len(many))], encoded=blobs)
        assert np.allclose(scorer.score_images(files), expected, atol=1e-6)
        assert files.pixels is None  # decoded in the workers, beside their inference, not here
        blobs[CHUNK + 3] = b"not a png"
        with pytest.raises(BatchInputError, match=rf"^image {CHUNK + 3}: "):
            scorer.score_images(ImageSet([str(i) for i in range(len(many))], encoded=blobs))
        import psutil

        workers = [psutil.Process(p.pid).cpu_times() for p in scorer._pool._pool]
        for process in scorer._pool._pool:  # spawned, not forked: no ONNX Runtime state copied from this process
            assert "from multiprocessing.spawn import spawn_main" in " ".join(psutil.Process(process.pid).cmdline())
        assert scorer.worker_cpu_seconds() == pytest.approx(sum(t.user + t.system for t in workers), abs=0.005)
        assert scorer.worker_cpu_seconds() > 0


def test_the_inference_limit_times_the_chunks_on_one_classifier(world, monkeypatch):
    from lifecycle.batch.batch_predict import CHUNK
    from service import runtime

    _, models, images, _, _ = world
    batches = []
    original = runtime.OnnxClassifier.predict

    def recording(self, batch):
        batches.append((batch.shape[0], batch.dtype))
        return original(self, batch)

    monkeypatch.setattr(runtime.OnnxClassifier, "predict", recording)
    clocks = {"perf_counter": iter([10.0, 14.0]), "thread_time": iter([1.0, 3.0])}

    class Clock:
        perf_counter = staticmethod(lambda: next(clocks["perf_counter"]))
        thread_time = staticmethod(lambda: next(clocks["thread_time"]))

    many = np.concatenate([images] * 8)[: 2 * CHUNK + 6]
    path = str(models / "registry/versions/test-v1/model.onnx")
    monkeypatch.setattr(bp, "time", Clock)
    assert bp.inference_limit(path, "pixels", many) == (len(many) / 4, len(many) / 2)
    assert batches[-3:] == [(CHUNK, np.float32), (CHUNK, np.float32), (6, np.float32)]


def test_rows_and_their_encodings_are_exact(tmp_path):
    from lifecycle.batch.batch_predict import ImageSet, encode_predictions, prediction_rows

    probabilities = np.array([[0.1234567, 0.8765433] + [0.0] * 8, [0.9] + [0.01] * 9], np.float64)
    names = [f"class-{i}" for i in range(10)]
    rows = prediction_rows(ImageSet(["a", "b"]), probabilities, names, "v7")
    assert rows[0] == {
        "image_id": "a",
        "class_id": 1,
        "class_name": "class-1",
        "probabilities": [0.123457, 0.876543] + [0.0] * 8,
        "model_version": "v7",
    }
    assert rows[1]["class_id"] == 0 and rows[1]["class_name"] == "class-0"
    with pytest.raises(ValueError, match="zip"):  # a scorer that lost an image fails, never shifts the ids
        prediction_rows(ImageSet(["a", "b", "c"]), probabilities, names, "v7")
    data, kind = encode_predictions(rows[:1], "gs://b/p.jsonl")
    assert kind == "application/jsonl"
    assert data == (json.dumps(rows[0]) + "\n").encode()
    data, kind = encode_predictions(rows, "p.parquet")
    assert kind == "application/vnd.apache.parquet"
    (tmp_path / "p.parquet").write_bytes(data)
    parquet = pq.ParquetFile(tmp_path / "p.parquet")
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    assert parquet.read().to_pylist() == rows
    with pytest.raises(BatchInputError) as refused:
        encode_predictions(rows, "p.csv")
    assert str(refused.value) == "--output p.csv: use a .jsonl or .parquet name"


def test_vertex_sends_the_job_over_the_wire_or_prints_it_with_dry_run(gcs_settings, gcs_champion, capsys):
    from tests.vertex_fake import vertex_over_the_wire

    pngs = f"gs://{gcs_settings.bucket_prefix}-datasets/incoming"
    storage.write_bytes(f"{pngs}/a.png", b"x")
    out = f"gs://{gcs_settings.bucket_prefix}-dev/scored"
    argv = ["--env", "dev", pngs, "--vertex", "--output", out]
    with vertex_over_the_wire(gcs_settings.project_id, gcs_settings.region) as fake:
        assert bp.main([*argv, "--dry-run"]) == 0
        printed = capsys.readouterr().out
        assert not [r for r in fake.requests if r.method == "POST"]
        assert bp.main(argv) == 0
        (created,) = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/batchPredictionJobs")]
        (name,) = [k for k in fake.resources if "/batchPredictionJobs/" in k]
    request = json.loads(printed)
    assert printed.startswith('{\n  "init": {\n')
    assert request["create"]["gcs_destination_prefix"] == out
    assert request["create"]["model_name"] == f"{gcs_settings.names.parent_model_name}@{gcs_champion}"
    assert created.body["model"] == f"{gcs_settings.names.parent_model_name}@{gcs_champion}"
    assert capsys.readouterr().out == f"Vertex AI batch prediction job {name} writes to {out}\n"
    assert bp.main(["--env", "dev", "/local/dir", "--vertex", "--output", out]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "gs:// only" in error


def test_a_worker_s_functions_score_with_its_one_warmed_classifier(world, monkeypatch):
    """What each spawned worker runs, here in this process (mutmut sees only this process's calls)."""
    from service.runtime import OnnxClassifier

    _, models, images, _, _ = world
    path = str(models / "registry/versions/test-v1/model.onnx")
    expected = OnnxClassifier(path, "pixels").predict(images.astype(np.float32))
    monkeypatch.setattr(bp, "_classifier", None)
    with pytest.raises(AssertionError, match=r"^the worker was not initialised$"):
        bp._score(images)
    bp._init_worker(path, "pixels")
    assert isinstance(bp._classifier, OnnxClassifier)
    assert np.allclose(bp._score(images), expected, atol=1e-6)
    assert np.allclose(bp._score_pngs((0, [_png(p) for p in images[:3]])), expected[:3], atol=1e-6)
    with pytest.raises(BatchInputError, match=r"^image 41: "):
        bp._score_pngs((40, [_png(images[0]), b"not a png"]))
    assert bp._noop(3) is None


def test_the_help_names_the_command_and_every_option_and_the_output_is_required(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal's width
    with pytest.raises(SystemExit) as done:
        bp.parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(
        "usage: python -m lifecycle batch-predict [-h] [--env ENV] [--model MODEL] --output OUTPUT "
        "[--workers WORKERS] [--vertex] [--dry-run] source\n\n"
        "`python -m lifecycle batch-predict SOURCE`: score a set of images with the champion, in-process and batched."
        "\n\n"
    )
    for option, help_text in (
        ("source", "a directory of PNGs, a gs:// prefix of PNGs, or an IDX image file"),
        ("--env ENV", "config environment (default: $FMNIST_ENV or local)"),
        ("--model MODEL", "model reference or version directory (default: <models bucket>@champion)"),
        ("--output OUTPUT", "predictions file: .jsonl or .parquet (local or gs://)"),
        ("--workers WORKERS", "worker processes, one ONNX Runtime thread each (default: cores)"),
        ("--vertex", "score on Vertex AI batch prediction (gcp target)"),
        ("--dry-run", "with --vertex: print the job request, send nothing"),
    ):
        assert re.search(rf"\n  {re.escape(option)} +{re.escape(help_text)}\n", text), option
    with pytest.raises(SystemExit) as refused:
        bp.parse_args(["pngs"])
    assert refused.value.code == 2
    assert "error: the following arguments are required: --output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bp.parse_args(["pngs", "--output", "p.jsonl", "--workers", "two"])
    assert "argument --workers: invalid int value: 'two'" in capsys.readouterr().err
    parsed = bp.parse_args(["pngs", "--output", "p.jsonl"])
    assert (parsed.vertex, parsed.dry_run, parsed.workers, parsed.model, parsed.env) == (False, False, None, None, None)


def test_the_scorer_starts_one_worker_per_core_or_one_where_the_count_is_unknown(world, monkeypatch):
    _, models, _, _, _ = world
    for cores, expected in ((3, 3), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        with BatchScorer(f"{models}@champion") as scorer:
            assert (scorer.workers, len(scorer._pool._pool)) == (expected, expected)
