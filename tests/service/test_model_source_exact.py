"""The model's loading as its callers use it, exactly: `load_bundle`'s options as the batch scorer and a person pass
them, the messages a missing index or an escaping path give (the file named in full), read errors of a storage
outage on GCS and on disk, and the index read pinned to the generation its token names."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from service.model_bundle import load_bundle
from service.model_errors import ModelLoadError, ModelReadError, ModelRefused, NoModelPromoted
from service.model_reader import ModelReader
from tests.service.model_factory import build_registry, make_version, upload_tree


def test_a_missing_index_names_the_file_in_full_and_what_to_do(tmp_path):
    root = tmp_path / "models"
    with pytest.raises(NoModelPromoted) as caught:
        load_bundle(f"{root}@champion")
    assert str(caught.value) == (
        f"no model to serve: {root}/registry/index.json does not exist, so the registry at {root} has no "
        "'champion'. Train, export and promote a model first (python -m trainer train / export / registry "
        "promote), or point MODEL_URI at a model directory."
    )


def test_a_record_path_outside_the_bucket_names_the_index_it_came_from(tmp_path, model_dir):
    root = build_registry(tmp_path / "models", model_dir)
    index = root / "registry" / "index.json"
    document = json.loads(index.read_text())
    document["versions"]["test-v1"]["path"] = "../outside"
    index.write_text(json.dumps(document))
    with pytest.raises(ModelLoadError) as caught:
        load_bundle(f"{root}@champion")
    assert str(caught.value).startswith(f"{index}: versions.test-v1.path '../outside' must be a path relative to ")


def test_load_bundle_serves_an_undigested_version_unverified_by_default_and_refuses_it_when_required(
    tmp_path, model_dir
):
    directory, _ = make_version(model_dir, tmp_path / "old", "v-old", digests=False)
    bundle = load_bundle(str(directory))  # as the batch scorer calls it
    assert (bundle.verified, bundle.digests_from, bundle.artifact_sha256) == (False, None, None)
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(directory), require_digests=True)
    assert caught.value.reason == "no_digest" and "REQUIRE_DIGESTS is on" in str(caught.value)


def test_load_bundle_serves_the_int8_artifact_when_asked(tmp_path, model_dir):
    directory, _ = make_version(model_dir, tmp_path / "q", "v-q", int8=True)
    assert load_bundle(str(directory)).artifact == "model.onnx"
    bundle = load_bundle(str(directory), artifact_preference="int8")
    assert bundle.artifact == "model.int8.onnx" and bundle.model_path == str(directory / "model.int8.onnx")
    assert bundle.artifact_sha256 == json.loads((directory / "metadata.json").read_text())["files"]["model.int8.onnx"]


def test_load_bundle_without_download_leaves_a_gcs_artifact_where_it_is(gcs_bucket, tmp_path, model_dir):
    version = tmp_path / "version"
    shutil.copytree(model_dir, version)
    upload_tree(version, gcs_bucket, "v1")
    bundle = load_bundle(f"{gcs_bucket}/v1", download=False)
    assert bundle.model_path == f"{gcs_bucket}/v1/model.onnx"
    downloaded = load_bundle(f"{gcs_bucket}/v1", cache_dir=str(tmp_path / "cache"))
    assert downloaded.model_path == str(tmp_path / "cache" / "model.onnx")


class _Forbidden(BaseHTTPRequestHandler):
    """A storage endpoint that refuses every request, as Cloud Storage does for an account without access."""

    def do_GET(self):
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def forbidding_storage(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Forbidden)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"127.0.0.1:{server.server_port}")
    yield
    server.shutdown()


def test_a_gcs_permission_error_is_a_read_error_naming_the_object(forbidding_storage, tmp_path):
    uri = "gs://models-bucket/registry/index.json"
    reader = ModelReader()
    for attempt in (lambda: reader.version_token(uri), lambda: reader.download(uri, (tmp_path / "x").open("wb"))):
        with pytest.raises(ModelReadError) as caught:
            attempt()
        message = str(caught.value)
        assert message.startswith(f"cannot read {uri}: ") and "permission denied (HTTP 403)" in message


def test_a_local_index_behind_a_file_is_a_read_error_naming_it(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "registry").write_text("a file where the registry folder should be")
    index = f"{root}/registry/index.json"
    with pytest.raises(ModelReadError) as caught:
        ModelReader().version_token(index)
    assert str(caught.value) == f"cannot read {index}: Not a directory"


def test_the_index_read_is_pinned_to_the_generation_its_token_names(gcs_bucket):
    """Rewritten between the generation request and the read: never the new bytes under the old token."""
    import storage

    uri = f"{gcs_bucket}/models/registry/index.json"
    storage.write_bytes(uri, b'{"first": 1}')
    reader = ModelReader()
    generation = reader.gcs().generation

    def then_rewritten(name: str) -> int:
        found = generation(name)
        storage.write_bytes(uri, b'{"second": 2}')
        return found

    reader.gcs().generation = then_rewritten
    token, data = reader.read_versioned(uri)
    assert (token, data) == (None, None) or data == b'{"first": 1}', (token, data)
    reader.gcs().generation = generation
    token, data = reader.read_versioned(uri)
    assert data == b'{"second": 2}' and token == generation(uri)


def _edited_registry(tmp_path, model_dir, edit) -> tuple[Path, Path]:
    root = build_registry(tmp_path / "models", model_dir)
    index = root / "registry" / "index.json"
    document = json.loads(index.read_text())
    edit(document)
    index.write_text(json.dumps(document))
    return root, index


def test_a_missing_alias_lists_at_most_ten_aliases_cut_to_forty_characters(tmp_path, model_dir):
    long = "a-very-long-alias-name-that-goes-on-and-on-past-forty"
    names = [long, *(f"alias-{i:02d}" for i in range(11))]
    root, _ = _edited_registry(
        tmp_path, model_dir, lambda document: document.update(aliases=dict.fromkeys(names, "test-v1"))
    )
    listed = ", ".join(sorted(name[:40] for name in names)[:10])
    assert long[:40] in listed and "alias-10" not in listed
    with pytest.raises(NoModelPromoted) as caught:
        load_bundle(f"{root}@champion")
    assert str(caught.value) == (
        f"no model to serve: the registry at {root} has no 'champion' alias (aliases: {listed}). Promote a "
        "version to 'champion' with python -m trainer registry, or point MODEL_URI at a model directory."
    )
    root, _ = _edited_registry(tmp_path / "empty", model_dir, lambda document: document.update(aliases={}))
    with pytest.raises(NoModelPromoted, match=r"has no 'champion' alias \(aliases: none\)\. Promote"):
        load_bundle(f"{root}@champion")


def test_an_alias_naming_a_version_without_a_record_is_named(tmp_path, model_dir):
    root, index = _edited_registry(tmp_path, model_dir, lambda document: document["aliases"].update(champion="v-gone"))
    with pytest.raises(ModelLoadError) as caught:
        load_bundle(f"{root}@champion")
    assert str(caught.value) == f"{index}: alias 'champion' names version v-gone, which has no record"


def test_a_long_version_id_is_cut_to_eighty_characters_in_a_path_error(tmp_path, model_dir):
    version = "v" * 100

    def edit(document):
        record = document["versions"].pop("test-v1")
        document["versions"][version] = {**record, "path": "../outside"}
        document["aliases"] = {"champion": version}

    root, index = _edited_registry(tmp_path, model_dir, edit)
    with pytest.raises(ModelLoadError) as caught:
        load_bundle(f"{root}@champion")
    assert str(caught.value).startswith(f"{index}: versions.{'v' * 80}.path '../outside' must be a path relative")


def test_a_local_versioned_read_is_the_files_bytes_with_its_own_status(tmp_path):
    index = tmp_path / "index.json"
    index.write_bytes(b'{"versions": {}, "aliases": {}}\n')
    reader = ModelReader()
    token, data = reader.read_versioned(str(index))
    assert data == index.read_bytes() and isinstance(data, bytes)
    assert token == reader.version_token(str(index))
    assert reader.read_versioned(str(tmp_path / "absent.json")) == (None, None)
    (tmp_path / "registry").write_text("a file where a folder should be")
    with pytest.raises(ModelReadError) as caught:
        reader.read_versioned(f"{tmp_path}/registry/index.json")
    assert str(caught.value) == f"cannot read {tmp_path}/registry/index.json: Not a directory"


def test_a_served_file_without_a_recorded_digest_is_refused_naming_what_is_recorded(tmp_path, model_dir):
    version = tmp_path / "version"
    shutil.copytree(model_dir, version)
    metadata = json.loads((version / "metadata.json").read_text())
    metadata["files"] = {"samples.npz": metadata["files"]["samples.npz"], "notes.txt": "0" * 64}
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert caught.value.reason == "no_digest"
    assert str(caught.value) == (
        f"{version}/model.onnx has no SHA-256 in the metadata.json (it lists notes.txt, samples.npz); refused: a "
        "file the service reads must be recorded. Register the version again"
    )


def test_a_gcs_download_into_an_existing_cache_dir_and_a_missing_artifact_leaving_nothing(
    gcs_bucket, tmp_path, model_dir
):
    version = tmp_path / "version"
    shutil.copytree(model_dir, version)
    upload_tree(version, gcs_bucket, "v1")
    cache = tmp_path / "cache"
    cache.mkdir()  # a cache directory that already exists (a second load into the same place)
    assert load_bundle(f"{gcs_bucket}/v1", cache_dir=str(cache)).model_path == str(cache / "model.onnx")
    (version / "model.onnx").unlink()
    upload_tree(version, gcs_bucket, "v2")  # the version without its artifact
    empty = tmp_path / "empty"
    with pytest.raises(ModelRefused) as caught:
        load_bundle(f"{gcs_bucket}/v2", cache_dir=str(empty))
    assert caught.value.reason == "missing_file"
    assert str(caught.value).startswith(f"{gcs_bucket}/v2/model.onnx is missing (recorded sha256 ")
    assert list(empty.iterdir()) == []  # the partial download is not left behind


def test_a_damaged_artifact_is_refused_with_both_digests_and_its_size(tmp_path, model_dir):
    import hashlib

    version = tmp_path / "version"
    shutil.copytree(model_dir, version)
    recorded = json.loads((version / "metadata.json").read_text())["files"]["model.onnx"]
    damaged = (version / "model.onnx").read_bytes()[:-100]
    (version / "model.onnx").write_bytes(damaged)
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert caught.value.reason == "digest_mismatch"
    assert str(caught.value) == (
        f"{version}/model.onnx was changed, truncated or damaged: sha256 {hashlib.sha256(damaged).hexdigest()} "
        f"({len(damaged):,} bytes), the metadata.json records {recorded}. Refused; restore the file or register "
        "the model again"
    )
    assert (version / "model.onnx").read_bytes() == damaged  # the refused file is left where it is, not deleted


def _unverified(tmp_path, model_dir, name: str = "version", **metadata_changes) -> Path:
    """A copy of the test model without recorded digests (so its files can be edited), metadata changed."""
    version = tmp_path / name
    shutil.copytree(model_dir, version)
    metadata = json.loads((version / "metadata.json").read_text())
    metadata.pop("files", None)
    for key, value in metadata_changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    (version / "metadata.json").write_text(json.dumps(metadata))
    return version


@pytest.mark.parametrize(
    "measured_on, int8_speed, served",
    [("this", 1300.0, "model.int8.onnx"), ("this", 1040.0, "model.onnx"), ("another", 1300.0, "model.onnx")],
)
def test_auto_serves_int8_only_where_the_export_measured_it_faster_on_this_cpu(
    tmp_path, model_dir, measured_on, int8_speed, served
):
    from contracts.artifact_speed import SpeedRecord, cpu_model

    cpu = cpu_model() if measured_on == "this" else "Another CPU @ 2.0GHz"
    speed = SpeedRecord(cpu, 1000.0, int8_speed).to_dict()
    directory, _ = make_version(model_dir, tmp_path / "q", "v-q", int8=True, speed=speed)
    assert load_bundle(str(directory), artifact_preference="auto").artifact == served


def test_a_missing_serving_artifact_field_means_model_onnx(tmp_path, model_dir):
    version = _unverified(tmp_path, model_dir, serving_artifact=None)
    assert load_bundle(str(version)).artifact == "model.onnx"


@pytest.mark.parametrize("preference", ["int8", "auto"])
def test_an_int8_artifact_that_is_not_onnx_is_named_by_its_field(tmp_path, model_dir, preference):
    from contracts.artifact_speed import SpeedRecord, cpu_model

    speed = {"speed": SpeedRecord(cpu_model(), 1000.0, 1300.0).to_dict()}
    version = _unverified(tmp_path, model_dir, int8_artifact="model.int8.bin", quantization=speed)
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version), artifact_preference=preference)
    assert caught.value.reason == "invalid" and str(caught.value) == (
        f"{version}/metadata.json: int8_artifact 'model.int8.bin' is not an ONNX file; this service runs ONNX "
        "Runtime and needs model.onnx"
    )


def test_a_float_artifact_that_is_not_onnx_is_named_by_its_field_under_auto(tmp_path, model_dir):
    version = _unverified(tmp_path, model_dir, serving_artifact="model.bin", int8_artifact=None)
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version), artifact_preference="auto")
    assert str(caught.value).startswith(f"{version}/metadata.json: serving_artifact 'model.bin' is not an ONNX file")


def test_int8_asked_of_a_model_without_one_says_so_and_serves_the_float_artifact(tmp_path, model_dir, caplog):
    version = _unverified(tmp_path, model_dir, int8_artifact=None, model_version="v-float")
    assert load_bundle(str(version), artifact_preference="int8").artifact == "model.onnx"
    assert [r.getMessage() for r in caplog.records] == [
        "MODEL_ARTIFACT=int8 but model v-float has no int8 artifact (metadata int8_artifact is unset: it was not "
        "exported or did not pass its accuracy gate); serving the float artifact model.onnx",
        f"model v-float is served unverified: {version} records no SHA-256 digests (an export from before digests "
        "were recorded); set REQUIRE_DIGESTS=true to refuse such versions",
    ]


class _Planted:
    """Unpickling it touches a file: what a crafted samples.npz would do if object arrays were loaded."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _npz(**arrays) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_samples_load_without_labels_and_one_image_is_enough(tmp_path, model_dir):
    import numpy as np

    version = _unverified(tmp_path, model_dir)
    (version / "samples.npz").write_bytes(_npz(images=np.zeros((1, 28, 28), np.uint8)))
    samples = load_bundle(str(version)).samples
    assert samples.images.shape == (1, 28, 28) and samples.labels is None


def test_bad_samples_are_refused_with_what_was_found(tmp_path, model_dir):
    import numpy as np

    version = _unverified(tmp_path, model_dir)
    where = f"{version}/samples.npz"
    cases = {
        "float32": (np.zeros((5, 28, 28), np.float32), "got float32 [5, 28, 28]"),
        "27x27": (np.zeros((5, 27, 27), np.uint8), "got uint8 [5, 27, 27]"),
        "empty": (np.zeros((0, 28, 28), np.uint8), "got uint8 [0, 28, 28]"),
    }
    for images, found in cases.values():
        (version / "samples.npz").write_bytes(_npz(images=images))
        with pytest.raises(ModelRefused) as caught:
            load_bundle(str(version))
        assert str(caught.value) == f"{where}: 'images' must be uint8 [K,28,28] with K >= 1, {found}"
    (version / "samples.npz").write_bytes(_npz(images=np.zeros((5, 28, 28), np.uint8), labels=np.zeros(3)))
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert str(caught.value) == f"{where}: 'labels' must have one entry per image"
    (version / "samples.npz").write_bytes(b"not an npz archive")
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert str(caught.value).startswith(f"{where}: expected an .npz with 'images' uint8 [K,28,28] (")


def test_a_samples_file_holding_pickled_objects_is_refused_unloaded(tmp_path, model_dir):
    import numpy as np

    version = _unverified(tmp_path, model_dir)
    marker = tmp_path / "unpickled"
    _Planted.marker = str(marker)
    planted = np.empty(1, dtype=object)
    planted[0] = _Planted()
    (version / "samples.npz").write_bytes(_npz(images=planted))
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert "allow_pickle=False" in str(caught.value) and not marker.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"class_names": None, "input": None}, "missing key(s) class_names, input (see docs/CONTRACTS.md)"),
        ({"class_names": [f"c{i}" for i in range(9)]}, "class_names must be a list of 10 strings"),
        ({"input": {"name": 5}}, 'input.name must name the model\'s input tensor (e.g. "pixels")'),
        ({"files": {"model.onnx": "abc"}}, "the metadata.json's files must map file names to SHA-256 hex digests"),
    ],
    ids=["missing", "nine-classes", "input-name", "short-digest"],
)
def test_bad_metadata_is_refused_naming_the_field(tmp_path, model_dir, change, message):
    version = _unverified(tmp_path, model_dir, **change)  # "files" set after the digests are dropped
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert caught.value.reason == "invalid" and str(caught.value) == f"{version}/metadata.json: {message}"


def test_metadata_that_is_not_an_object_is_refused(tmp_path, model_dir):
    version = _unverified(tmp_path, model_dir)
    (version / "metadata.json").write_text("[]")
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert str(caught.value) == f"{version}/metadata.json: expected a JSON object"


def test_refusals_carry_their_reason_codes_and_say_what_to_do(tmp_path, model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(empty))
    assert (caught.value.reason, str(caught.value)) == (
        "missing_file",
        f"{empty} is not a model directory: metadata.json is missing (expected model.onnx + metadata.json, as "
        "`python -m trainer export` writes)",
    )
    broken = _unverified(tmp_path, model_dir, "broken")
    (broken / "metadata.json").write_text("{not json")
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(broken))
    assert caught.value.reason == "invalid"
    assert str(caught.value).startswith(f"{broken}/metadata.json: not valid JSON (")
    escaping = _unverified(tmp_path, model_dir, "escaping", serving_artifact="../model.onnx")
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(escaping))
    assert caught.value.reason == "invalid"
    bad_samples = _unverified(tmp_path, model_dir, "bad-samples")
    (bad_samples / "samples.npz").write_bytes(b"not an npz archive")
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(bad_samples))
    assert caught.value.reason == "invalid"
    undigested = _unverified(tmp_path, model_dir, "undigested")
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(undigested), require_digests=True)
    assert str(caught.value) == (
        f"{undigested}: neither the registry record nor metadata.json records SHA-256 digests (exported before "
        "digests were recorded), and REQUIRE_DIGESTS is on: refused. Export and register it again, or set "
        "REQUIRE_DIGESTS=false to serve it unverified"
    )


def test_metadata_changed_after_registration_is_refused_against_the_registry_record(tmp_path, model_dir):
    from tests.service.model_factory import local_registry, register

    registry = local_registry(tmp_path / "models")
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1])
    metadata = Path(registry.version_uri("v1")) / "metadata.json"
    metadata.write_text(metadata.read_text() + " ")
    with pytest.raises(ModelRefused) as caught:
        load_bundle(f"{registry.root}@champion")
    assert caught.value.reason == "digest_mismatch"
    assert str(caught.value).startswith(f"{metadata} was changed, truncated or damaged: sha256 ")
    assert f"the registry record records {v1[1]['metadata.json']}. Refused" in str(caught.value)


def test_a_download_without_a_cache_dir_goes_to_a_folder_of_its_own_in_the_state_dir(gcs_bucket, tmp_path):
    import os
    import re

    import storage

    storage.write_bytes(f"{gcs_bucket}/v1/model.onnx", b"onnx bytes")
    state = tmp_path / "state"
    first = Path(ModelReader(str(state)).local_copy(f"{gcs_bucket}/v1/model.onnx", None))
    second = Path(ModelReader(str(state)).local_copy(f"{gcs_bucket}/v1/model.onnx", None))
    assert first.read_bytes() == second.read_bytes() == b"onnx bytes" and first != second
    for path in (first, second):
        assert path.name == "model.onnx" and path.parent.parent == state
        assert re.fullmatch(rf"fmnist-model-{os.getpid()}-[0-9a-f]+", path.parent.name), path


def test_a_damaged_gcs_download_is_not_kept_and_a_missing_unverified_artifact_is_named(gcs_bucket, tmp_path, model_dir):
    from service.model_bundle import load_resolved
    from service.model_reference import Resolved

    version = tmp_path / "version"
    shutil.copytree(model_dir, version)
    (version / "model.onnx").write_bytes((version / "model.onnx").read_bytes()[:-100])
    upload_tree(version, gcs_bucket, "damaged")
    cache = tmp_path / "cache"
    with pytest.raises(ModelRefused) as caught:
        load_bundle(f"{gcs_bucket}/damaged", cache_dir=str(cache))
    assert caught.value.reason == "digest_mismatch" and list(cache.iterdir()) == []

    unverified = _unverified(tmp_path, model_dir, "unverified")
    (unverified / "model.onnx").unlink()
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(unverified))
    assert str(caught.value) == f"{unverified}/model.onnx is missing; re-run the export step"

    upload_tree(model_dir, gcs_bucket, "whole")
    whole = f"{gcs_bucket}/whole"
    bundle = load_resolved(Resolved(whole, whole, None), cache_dir=str(tmp_path / "downloaded"))  # download=True
    assert bundle.model_path == str(tmp_path / "downloaded" / "model.onnx")


@pytest.mark.parametrize(
    "name",
    ["a\\..\\..\\outside.onnx", "c:model.onnx", "\\model.onnx", "sub/gs://other/model.onnx", "model\0.onnx"],
    ids=["backslash-dots", "drive", "backslash-root", "scheme-inside", "nul"],
)
def test_an_artifact_name_that_could_leave_the_directory_is_refused(tmp_path, model_dir, name):
    version = _unverified(tmp_path, model_dir, serving_artifact=name)
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert " must be a path relative to " in str(caught.value)


def test_a_long_escaping_name_is_cut_to_eighty_characters_in_the_message(tmp_path, model_dir):
    name = "/" + "x" * 120 + ".onnx"
    version = _unverified(tmp_path, model_dir, serving_artifact=name)
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert str(caught.value) == (
        f"{version}/metadata.json: serving_artifact {name[:80]!r} must be a path relative to {version} without "
        "'..' (refused: it would read outside the models bucket or the model directory)"
    )


def test_a_long_name_leading_out_through_a_link_is_cut_to_eighty_characters_in_the_message(tmp_path, model_dir):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(model_dir / "model.onnx", outside / "model.onnx")  # a real model there: only the check stops it
    link = "l" * 120
    name = f"{link}/model.onnx"
    version = _unverified(tmp_path, model_dir, serving_artifact=name)
    (version / link).symlink_to(outside)
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(version))
    assert str(caught.value) == (
        f"{version}/metadata.json: serving_artifact {name[:80]!r} leads outside {version} (through a link); refused"
    )


def test_a_version_without_samples_loads_and_damaged_samples_are_refused(tmp_path, model_dir):
    from tests.service.model_factory import digest_files

    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "samples.npz").unlink()
    digest_files(bare)
    bundle = load_bundle(str(bare))
    assert bundle.samples is None and bundle.requested_uri == str(bare)
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    (damaged / "samples.npz").write_bytes((damaged / "samples.npz").read_bytes()[:-10])
    with pytest.raises(ModelRefused) as caught:
        load_bundle(str(damaged))
    assert str(caught.value).startswith(f"{damaged}/samples.npz was changed, truncated or damaged: sha256 ")
    assert ", the metadata.json records " in str(caught.value)


def test_names_are_joined_and_references_split_without_doubled_slashes(monkeypatch, tmp_path):
    from service.model_reader import join, scratch_dir
    from service.model_reference import split_reference

    assert join("gs://b/models/", "/registry/index.json") == "gs://b/models/registry/index.json"
    assert split_reference("gs://b/models/@champion") == ("gs://b/models", "champion")
    assert split_reference("/a/modelsX/") == ("/a/modelsX", None)
    # only "/" is stripped: a bucket path or a name that begins or ends in X keeps it
    assert join("gs://b/models-X/", "Xception/model.onnx") == "gs://b/models-X/Xception/model.onnx"
    assert join("gs://b/models-X", "registry/index.json") == "gs://b/models-X/registry/index.json"
    assert join("gs://b/m", "/versions/vX/") == "gs://b/m/versions/vX"
    assert split_reference("gs://b/models-X/@champion") == ("gs://b/models-X", "champion")
    assert split_reference("gs://b/models-X@champion") == ("gs://b/models-X", "champion")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert (scratch_dir(None), scratch_dir("/state")) == (str(tmp_path), "/state")
    monkeypatch.delenv("TMPDIR")
    assert scratch_dir(None) == "/tmp"


def test_read_errors_name_the_object(tmp_path, forbidding_storage):
    uri = "gs://models-bucket/registry/versions/v1/metadata.json"
    with pytest.raises(ModelReadError) as caught:
        ModelReader().read(uri)
    assert str(caught.value).startswith(f"cannot read {uri}: ") and "permission denied (HTTP 403)" in str(caught.value)
    with pytest.raises(ModelReadError) as caught:
        ModelReader().read(str(tmp_path))
    assert str(caught.value) == f"cannot read {tmp_path}: Is a directory"
