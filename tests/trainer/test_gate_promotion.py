"""`registry promote` with the paired gate, on real ONNX models and generated data: a candidate identical to the
champion is reported as such and not promoted; a worse one is refused by the paired test, a better one promoted;
each writes its report beside the index. The pinned set is the official test set, found by its published MD5s
(not by what a manifest says), and without it the gate refuses unless told to use the candidate's split alone."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest

import storage
from tests.conftest import make_idx_dir
from tests.service.model_factory import build_linear_model_dir, cached_model_dir, make_version
from trainer.errors import GateRefused
from trainer.models.gate_sets import REPORTS_DIR, official_test_set
from trainer.models.registry import ModelRegistry

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("gate-models")
    cnn = cached_model_dir(base / "cnn")
    return {"cnn": cnn, "linear": build_linear_model_dir(cnn, base / "linear", "linear")}


def gate_settings(tmp_path: Path, **overrides):
    from settings import load_config

    environ = {"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"), "FMNIST_REGISTRY__ACCURACY_FLOOR": "0"}
    return load_config("local", environ={**environ, **overrides})


def ingest_generated(settings, tmp_path: Path) -> str:
    from trainer.data.ingest import Source, ingest

    return ingest(settings, Source("directory", str(make_idx_dir(tmp_path / "idx", 300, 200))))


def add(registry, tmp_path: Path, source: Path, version: str, dataset: str) -> str:
    directory, files = make_version(source, tmp_path / "build" / version, version)
    registry.register(
        str(directory), {"accuracy": 0.9}, "custom", dataset_version=dataset, version=version, extra={"files": files}
    )
    return version


def report(registry, candidate: str, champion: str) -> dict:
    uri = storage.join(registry.root, REPORTS_DIR, f"{candidate}-vs-{champion}.json")
    return json.loads(storage.read_text(uri))


def test_identical_worse_and_better_candidates(tmp_path, models):
    settings = gate_settings(tmp_path, FMNIST_REGISTRY__REQUIRE_PINNED_GATE_SET="false")
    dataset = ingest_generated(settings, tmp_path)
    registry = ModelRegistry.from_settings(settings)
    assert registry.paired_gate is not None
    registry.promote(add(registry, tmp_path, models["cnn"], "cnn-1", dataset))

    add(registry, tmp_path, models["cnn"], "cnn-2", dataset)  # the same model again, under a new version id
    with pytest.raises(GateRefused, match="predicts the champion's class on all 200 gate images"):
        registry.promote("cnn-2")
    identical = report(registry, "cnn-2", "cnn-1")
    assert identical["decision"] == "identical" and identical["sets"][0]["disagreements"] == 0
    assert identical["sets"][0]["gate_set"] == f"candidate test split {dataset}"

    add(registry, tmp_path, models["linear"], "linear", dataset)  # a random linear model: much worse
    with pytest.raises(GateRefused, match="exact McNemar"):
        registry.promote("linear")
    worse = report(registry, "linear", "cnn-1")
    assert worse["decision"] == "refuse" and worse["sets"][0]["only_champion_right"] > 100
    markdown = storage.read_text(storage.join(registry.root, REPORTS_DIR, "linear-vs-cnn-1.md"))
    assert "**Decision: refuse**" in markdown
    assert registry.read_index().alias("champion") == "cnn-1"

    # the other way round, in a registry of its own: a better candidate is promoted
    other = ModelRegistry.from_settings(settings)
    other.root = str(tmp_path / "mlops" / "models-2")
    other.promote(add(other, tmp_path / "b", models["linear"], "linear-1", dataset))
    assert other.promote(add(other, tmp_path / "b", models["cnn"], "cnn-3", dataset)) == ("cnn-3", "linear-1")
    assert report(other, "cnn-3", "linear-1")["decision"] == "promote"


def test_without_the_official_test_set_the_gate_refuses_by_default(tmp_path, models):
    settings = gate_settings(tmp_path)
    dataset = ingest_generated(settings, tmp_path)
    assert official_test_set(settings) is None  # generated files are not the published ones
    registry = ModelRegistry.from_settings(settings)
    registry.promote(add(registry, tmp_path, models["cnn"], "cnn-1", dataset))
    add(registry, tmp_path, models["linear"], "linear", dataset)
    with pytest.raises(GateRefused, match="no pinned gate set"):
        registry.promote("linear")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian dataset-fashion-mnist is not installed")
def test_the_official_test_set_is_found_by_its_published_checksums(tmp_path):
    from trainer.data.ingest import Source, ingest

    settings = gate_settings(tmp_path)
    ingest_generated(settings, tmp_path)
    official = ingest(settings, Source("directory", str(DEBIAN)))
    found = official_test_set(settings)
    assert found is not None
    gate_set, images = found
    assert gate_set.name == "official test set" and images.shape == (10_000, 28, 28) and len(gate_set.labels) == 10_000
    assert official in gate_set.provenance and "bb300cfd" not in gate_set.provenance  # content MD5s, not .gz ones
    assert gate_set.provenance.startswith(f"dataset version {official}; content MD5s equal the published ones (")
    # a manifest that says "official" does not make a changed file official
    base = Path(settings.datasets_bucket) / "fashion-mnist" / "versions" / official
    data = bytearray((base / "t10k-labels-idx1-ubyte.gz").read_bytes())
    import gzip

    raw = bytearray(gzip.decompress(bytes(data)))
    raw[-1] = (raw[-1] + 1) % 10
    (base / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    assert official_test_set(settings) is None


def test_a_pipeline_run_gates_and_waits_for_approval(tmp_path, models, capsys, monkeypatch):
    from trainer.cli import main

    settings = gate_settings(tmp_path, FMNIST_REGISTRY__REQUIRE_PINNED_GATE_SET="false")
    dataset = ingest_generated(settings, tmp_path)
    registry = ModelRegistry.from_settings(settings)
    registry.promote(add(registry, tmp_path, models["linear"], "linear-1", dataset))
    add(registry, tmp_path, models["cnn"], "cnn-1", dataset)
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setenv("FMNIST_REGISTRY__REQUIRE_PINNED_GATE_SET", "false")
    monkeypatch.setenv("FMNIST_REGISTRY__ACCURACY_FLOOR", "0")
    assert main(["--env", "local", "registry", "promote", "candidate", "--pending-approval"]) == 3
    assert "cnn-1 passed the gate and awaits approval" in capsys.readouterr().err
    index = registry.read_index().to_json()
    assert index["aliases"]["champion"] == "linear-1"  # not promoted
    assert index["events"][-1]["action"] == "awaiting_approval" and index["events"][-1]["version"] == "cnn-1"
    assert report(registry, "cnn-1", "linear-1")["decision"] == "promote"
    assert main(["--env", "local", "registry", "promote", "cnn-1"]) == 0  # the promoter's approval


def test_the_gcp_pipeline_asks_the_promoter_which_waits_for_approval_unless_configured_to_promote():
    from lifecycle.orchestration.plan import build_steps
    from settings import load_config
    from trainer.cloud.promotion import awaits_approval

    for switch, expected in (("false", True), ("true", False)):
        settings = load_config("dev", environ={"FMNIST_REGISTRY__PROMOTE_PIPELINE_RUNS": switch})
        steps = {s.name: s for s in build_steps(settings, run_id="r", preset="smoke")}
        model_dir = "gs://fmnist-mlops-dev-models/jobs/r/model"
        assert steps["export"].args[-1] == "--no-register"  # the pipeline cannot write the index
        assert steps["promote"].args[-4:] == ("promotion", "request", "--model-dir", model_dir)
        assert awaits_approval(settings) is expected
    assert awaits_approval(load_config("local")) is False  # one user locally: the registry promotes as before


def test_the_gate_scores_every_image_of_a_set_larger_than_one_batch_with_the_registered_model(tmp_path, models):
    import numpy as np
    import onnxruntime as ort

    from trainer.models.gate_sets import score_version

    registry = ModelRegistry.from_settings(gate_settings(tmp_path))
    add(registry, tmp_path, models["linear"], "linear-1", "d1")
    record = registry.read_index().versions["linear-1"]
    images = np.random.default_rng(0).integers(0, 256, (2_001, 28, 28), dtype=np.uint8)  # 3 batches of 1,000
    first, second = score_version(registry, "linear-1", record, [images, images[:5]])
    session = ort.InferenceSession(str(models["linear"] / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]
    assert first.shape == (2_001, 10) and second.shape == (5, 10)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second, expected[:5], rtol=1e-5, atol=1e-6)


def test_a_version_the_gate_cannot_score_is_refused_with_the_reason(tmp_path, models):
    from trainer.models.gate_sets import score_version

    registry = ModelRegistry.from_settings(gate_settings(tmp_path))
    add(registry, tmp_path, models["linear"], "linear-1", "d1")
    record = registry.read_index().versions["linear-1"]
    with pytest.raises(GateRefused) as no_onnx:
        score_version(registry, "linear-1", dataclasses.replace(record, files={}), [])
    assert str(no_onnx.value) == (
        "version linear-1 has no recorded model.onnx (an AutoML model or an export from before digests): the "
        "paired gate cannot score it"
    )
    onnx = Path(registry.version_uri("linear-1")) / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(GateRefused) as changed:
        score_version(registry, "linear-1", record, [])
    assert str(changed.value).startswith(f"version linear-1 cannot be gated: {onnx} was changed or damaged: sha256 ")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian dataset-fashion-mnist is not installed")
def test_which_sets_gate_a_candidate_beside_the_official_test_set(tmp_path):
    from trainer.data.ingest import Source, ingest
    from trainer.models.gate_sets import gate_sets

    settings = gate_settings(tmp_path)
    generated = ingest_generated(settings, tmp_path)
    official = ingest(settings, Source("directory", str(DEBIAN)))
    # a version whose test files cannot be read, listed before the official one: skipped, not the end of the search
    broken = Path(settings.datasets_bucket) / "fashion-mnist" / "versions" / "v-ffffffffffff"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{}")

    def names(candidate, champion):
        return [s.name for s, _ in gate_sets(settings, candidate, champion)]

    split = f"candidate test split {generated}"
    assert names(generated, generated) == ["official test set"]  # the same data as the champion's: pinned set only
    assert names(generated, official) == ["official test set", split]  # new data: its own split too
    assert names(generated, None) == ["official test set", split]
    assert names(official, generated) == ["official test set"]  # its split is the official test set itself
    assert names(None, generated) == ["official test set"]
    (_, images), (candidate_split, split_images) = gate_sets(settings, generated, official)
    assert images.shape == (10_000, 28, 28) and split_images.shape == (200, 28, 28)
    assert candidate_split.provenance == f"dataset version {generated}, verified against its manifest's hashes"
    assert candidate_split.labels.dtype == "int64" and len(candidate_split.labels) == 200
    with pytest.raises(GateRefused) as unreadable:
        gate_sets(settings, "v-000000000000", official)
    assert str(unreadable.value).startswith("the candidate's test split cannot be read for the gate: ")


def test_without_a_pinned_set_the_refusal_names_where_it_looked_and_both_ways_out(tmp_path):
    from trainer.models.gate_sets import gate_sets

    settings = gate_settings(tmp_path)
    generated = ingest_generated(settings, tmp_path)
    with pytest.raises(GateRefused) as refused:
        gate_sets(settings, generated, None)
    assert str(refused.value) == (
        f"no pinned gate set: no dataset version in {settings.datasets_bucket}/fashion-mnist holds the official "
        "Fashion-MNIST test files (checked by their published MD5s). Ingest them once (python -m trainer ingest "
        "--source debian or the canonical URL), or set registry.require_pinned_gate_set: false to gate on the "
        "candidate's split alone"
    )
    relaxed = gate_settings(tmp_path, FMNIST_REGISTRY__REQUIRE_PINNED_GATE_SET="false")
    [(gate_set, images)] = gate_sets(relaxed, generated, generated)  # no official set: the candidate's split
    assert gate_set.name == f"candidate test split {generated}" and images.shape == (200, 28, 28)


def test_the_paired_gate_takes_its_rules_from_the_config_and_leaves_an_automl_model_to_the_stored_gate(
    tmp_path, models
):
    from trainer.models.gate import GateRules
    from trainer.models.gate_sets import PairedGate, read_report

    settings = gate_settings(
        tmp_path,
        FMNIST_REGISTRY__GATE_ALPHA="0.01",
        FMNIST_REGISTRY__GATE_RECALL_MARGIN="0.04",
        FMNIST_REGISTRY__GATE_CALIBRATION_TOLERANCE="0.03",
    )
    gate = PairedGate(settings)
    assert gate.rules == GateRules(0.01, 0.04, 0.03)
    registry = ModelRegistry.from_settings(settings)
    add(registry, tmp_path, models["linear"], "linear-1", "d1")
    directory, _ = make_version(models["linear"], tmp_path / "build" / "automl", "automl")
    registry.register(str(directory), {"accuracy": 0.9}, "automl", dataset_version="d1", version="automl")
    index = registry.read_index()
    assert gate(registry, "automl", "linear-1", index) is None  # no recorded model.onnx: nothing to score
    assert gate(registry, "linear-1", "automl", index) is None
    assert read_report(registry.root, "automl", "linear-1") is None  # and no report written


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian dataset-fashion-mnist is not installed")
def test_promote_gates_two_versions_of_the_same_data_on_the_official_set_alone_with_the_configured_rules(
    tmp_path, models
):
    from trainer.data.ingest import Source, ingest

    settings = gate_settings(tmp_path, FMNIST_REGISTRY__GATE_ALPHA="0.01", FMNIST_REGISTRY__GATE_RECALL_MARGIN="0.5")
    dataset = ingest_generated(settings, tmp_path)
    ingest(settings, Source("directory", str(DEBIAN)))
    registry = ModelRegistry.from_settings(settings)
    registry.promote(add(registry, tmp_path, models["linear"], "linear-1", dataset))
    other = build_linear_model_dir(models["cnn"], tmp_path / "other", "linear-2", seed=1)
    add(registry, tmp_path, other, "linear-2", dataset)
    with contextlib.suppress(GateRefused):  # two random models: either outcome; the report is what is checked
        registry.promote("linear-2")
    gated = report(registry, "linear-2", "linear-1")
    assert [s["gate_set"] for s in gated["sets"]] == ["official test set"]  # the same data: no second split
    assert gated["sets"][0]["images"] == 10_000
    assert gated["rules"] == {"alpha": 0.01, "recall_margin": 0.5, "calibration_tolerance": 0.02}


def test_the_gate_report_on_cloud_storage_is_typed_for_the_people_who_open_it(gcs_bucket, tmp_path, models):
    """The paired gate of a gcp registry over the wire to fake-gcs-server: the JSON report is served as JSON and
    the Markdown one as UTF-8 Markdown (the console and a browser render what the type says)."""
    from settings import load_config
    from trainer.models.gate_sets import PairedGate, report_base

    prefix = gcs_bucket[len("gs://") :]
    environ = {"FMNIST_BUCKET_PREFIX": prefix, "FMNIST_REGISTRY__REQUIRE_PINNED_GATE_SET": "false"}
    settings = load_config("dev", environ={**environ, "FMNIST_REGISTRY__ACCURACY_FLOOR": "0"})
    for kind in ("dev", "datasets", "models"):
        storage.gcs_client().create_bucket(f"{prefix}-{kind}")
    dataset = ingest_generated(settings, tmp_path)
    registry = ModelRegistry.from_settings(settings)
    add(registry, tmp_path, models["linear"], "linear-1", dataset)
    add(registry, tmp_path, models["cnn"], "cnn-1", dataset)
    report = PairedGate(settings)(registry, "cnn-1", "linear-1", registry.read_index())
    assert report is not None and report.sets[0].images == 200
    bucket, name = report_base(registry.root, "cnn-1", "linear-1")[len("gs://") :].split("/", 1)
    blobs = storage.gcs_client().bucket(bucket)
    assert blobs.get_blob(name + ".json").content_type == "application/json"
    assert blobs.get_blob(name + ".md").content_type == "text/markdown; charset=utf-8"


def hand_made_version(settings, source: str, name: str, labels=None, images=None) -> str:
    """A copy of dataset version `source` whose test labels or images were replaced, with a manifest whose hashes
    match (a version written by hand or by an older ingest: load_dataset verifies hashes, not labels)."""
    import hashlib
    import shutil

    import numpy as np

    from tests.conftest import write_idx

    versions = Path(settings.datasets_bucket) / "fashion-mnist" / "versions"
    target = versions / name
    shutil.copytree(versions / source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    for role, array in (("test_labels", labels), ("test_images", images)):
        if array is not None:
            path = write_idx(target / manifest["files"][role]["name"], np.asarray(array, np.uint8))
            manifest["files"][role]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return name


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("label", "1 of 200 labels are outside 0-9 (the first, 10, at index 5)"),
        ("count", "200 labels for 199 images"),
    ],
    ids=["label-10", "199-images"],
)
def test_bad_labels_in_the_candidates_split_refuse_before_any_scoring_or_report(tmp_path, models, damage, problem):
    import numpy as np

    from tests.conftest import make_images

    settings = gate_settings(tmp_path, FMNIST_REGISTRY__REQUIRE_PINNED_GATE_SET="false")
    good = ingest_generated(settings, tmp_path)
    labels = (np.arange(200) % 10).astype(np.uint8)
    if damage == "label":
        labels[5] = 10
        bad = hand_made_version(settings, good, "v-0000000bad10", labels=labels)
    else:
        bad = hand_made_version(settings, good, "v-0000000bad99", images=make_images(labels[:199], seed=1))
    registry = ModelRegistry.from_settings(settings)
    registry.promote(add(registry, tmp_path, models["linear"], "linear-1", good))
    add(registry, tmp_path, models["cnn"], "cnn-1", bad)
    with pytest.raises(GateRefused) as refused:
        registry.promote("cnn-1")
    assert str(refused.value) == (
        f"the gate cannot use its sets: candidate test split {bad}: {problem}; a gate set needs one class index 0-9 "
        "per image: fix or drop those items (or rebuild the set); re-ingest that data (`python -m trainer ingest` "
        "checks every label and count)"
    )
    assert not storage.list_uris(storage.join(registry.root, REPORTS_DIR))  # nothing scored, nothing written
    assert registry.read_index().alias("champion") == "linear-1"
