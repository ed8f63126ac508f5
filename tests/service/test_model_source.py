"""Finding the model: directories, registry references, gs:// on a real GCS emulator, and clear failures."""

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from service import gcs
from service.model_bundle import load_bundle
from service.model_errors import ModelLoadError, NoModelPromoted
from service.model_reference import resolve_version_dir, split_reference
from tests.service.model_factory import upload_tree


def test_directory_bundle_has_metadata_model_and_samples(model_dir):
    bundle = load_bundle(str(model_dir))
    assert bundle.version == "test-v1" and bundle.alias is None
    assert bundle.model_path == str(model_dir / "model.onnx")
    assert bundle.samples.images.shape == (20, 28, 28) and bundle.samples.labels.shape == (20,)
    assert len(bundle.class_names) == 10


def test_registry_reference_resolves_the_alias(models_root):
    bundle = load_bundle(f"{models_root}@champion")
    assert bundle.alias == "champion"
    assert bundle.version_dir == str(models_root / "registry" / "versions" / "test-v1")


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("/a/models@champion", ("/a/models", "champion")),
        ("gs://p-models@candidate", ("gs://p-models", "candidate")),
        ("/a/models/registry/versions/v1", ("/a/models/registry/versions/v1", None)),
        ("/a/models/", ("/a/models", None)),
    ],
)
def test_split_reference(uri, expected):
    assert split_reference(uri) == expected


def test_empty_registry_says_there_is_no_champion_and_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no model to serve: .*index.json does not exist.*python -m trainer"):
        load_bundle(f"{tmp_path}/models@champion")


def test_missing_alias_lists_the_aliases_there_are(tmp_path, model_dir):
    from tests.service.model_factory import build_registry

    root = build_registry(tmp_path / "models", model_dir, alias="candidate")
    with pytest.raises(NoModelPromoted, match=r"no 'champion' alias \(aliases: candidate\)"):
        resolve_version_dir(f"{root}@champion")


def test_directory_without_metadata_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match=r"is not a model directory: metadata.json is missing"):
        load_bundle(str(tmp_path))


def test_metadata_missing_keys_are_named(tmp_path, model_dir):
    shutil.copytree(model_dir, tmp_path / "m")
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    del metadata["class_names"]
    (tmp_path / "m" / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="missing key.*class_names"):
        load_bundle(str(tmp_path / "m"))


def test_missing_artifact_is_named(tmp_path, model_dir):
    shutil.copytree(model_dir, tmp_path / "m")
    (tmp_path / "m" / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"model.onnx is missing"):
        load_bundle(str(tmp_path / "m"))


def test_gcs_directory_and_registry_reference_on_the_emulator(gcs_bucket, models_root, tmp_path):
    upload_tree(models_root, gcs_bucket, "models")
    by_ref = load_bundle(f"{gcs_bucket}/models@champion", cache_dir=str(tmp_path / "a"))
    assert by_ref.version_dir == f"{gcs_bucket}/models/registry/versions/test-v1"
    by_dir = load_bundle(by_ref.version_dir, cache_dir=str(tmp_path / "b"))
    assert by_ref.model_path == str(tmp_path / "a" / "model.onnx")
    local = models_root / "registry" / "versions" / "test-v1" / "model.onnx"
    assert Path(by_ref.model_path).read_bytes() == Path(by_dir.model_path).read_bytes() == local.read_bytes()
    assert by_dir.samples is not None
    with pytest.raises(ModelLoadError, match="no model to serve"):
        load_bundle(f"{gcs_bucket}/nothing-here@champion")


def test_gcs_request_carries_the_token_and_escapes_the_name():
    request = gcs.build_request("gs://my-bucket/models/registry/index.json", "tok", environ={})
    assert request.full_url == (
        "https://storage.googleapis.com/storage/v1/b/my-bucket/o/models%2Fregistry%2Findex.json?alt=media"
    )
    assert request.get_header("Authorization") == "Bearer tok"
    emulated = gcs.build_request("gs://b/x", None, environ={"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"})
    assert emulated.full_url.startswith("http://127.0.0.1:4443/storage/v1/b/b/o/x")
    assert emulated.get_header("Authorization") is None


class _MetadataServer(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Metadata-Flavor") == "Google" and self.path.endswith("/default/token")
        body = json.dumps({"access_token": "meta-token", "expires_in": 3599}).encode()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_token_comes_from_the_metadata_server_without_a_credentials_file(tmp_path, monkeypatch):
    monkeypatch.setattr(gcs, "WELL_KNOWN_ADC", tmp_path / "absent.json")
    server = HTTPServer(("127.0.0.1", 0), _MetadataServer)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        source = gcs.TokenSource({"GCE_METADATA_HOST": f"127.0.0.1:{server.server_port}"})
        assert source.token() == "meta-token"
    finally:
        server.shutdown()


def test_service_account_key_files_are_refused_with_the_fix(tmp_path):
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account"}))
    with pytest.raises(gcs.GcsError, match="application-default login"):
        gcs.TokenSource({"GOOGLE_APPLICATION_CREDENTIALS": str(key)}).token()


def _registry_with(tmp_path, model_dir, mutate) -> Path:
    """A registry whose index.json `mutate` edits (a dict in, any JSON value out)."""
    from tests.service.model_factory import build_registry

    root = build_registry(tmp_path / "models", model_dir)
    index_path = root / "registry" / "index.json"
    index_path.write_text(json.dumps(mutate(json.loads(index_path.read_text()))))
    return root


def _with_record_path(path):
    def mutate(index):
        index["versions"]["test-v1"]["path"] = path
        return index

    return mutate


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda index: [index], "expected a JSON object with 'versions' and 'aliases', got list"),
        (lambda index: {**index, "aliases": ["champion"]}, "aliases must be an object, got list"),
        (lambda index: {**index, "versions": "test-v1"}, "versions must be an object, got str"),
        (lambda index: {**index, "aliases": {"champion": 7}}, "aliases.champion must be a version id string"),
        (lambda index: {**index, "versions": {"test-v1": ["x"]}}, "versions.test-v1 must be an object, got list"),
        (_with_record_path(5), "versions.test-v1.path must be a non-empty string, got int"),
    ],
)
def test_malformed_registry_index_names_the_file_and_field(tmp_path, model_dir, mutate, fragment):
    root = _registry_with(tmp_path, model_dir, mutate)
    with pytest.raises(ModelLoadError) as caught:
        load_bundle(f"{root}@champion")
    assert "index.json" in str(caught.value) and fragment in str(caught.value)


@pytest.mark.parametrize("path", ["/etc", "../../outside", "registry/../../outside", "gs://other/models/v1"])
def test_a_registry_path_outside_the_bucket_is_refused(tmp_path, model_dir, path):
    outside = tmp_path / "outside"
    shutil.copytree(model_dir, outside)  # a real model there: only the check can stop the read
    root = _registry_with(tmp_path, model_dir, _with_record_path(path))
    with pytest.raises(ModelLoadError, match=r"versions\.test-v1\.path .*refused"):
        load_bundle(f"{root}@champion")


def test_a_registry_path_through_a_link_out_of_the_bucket_is_refused(tmp_path, model_dir):
    shutil.copytree(model_dir, tmp_path / "outside")
    root = _registry_with(tmp_path, model_dir, _with_record_path("registry/link"))
    (root / "registry" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(ModelLoadError, match="leads outside"):
        load_bundle(f"{root}@champion")


@pytest.mark.parametrize(
    "artifact,fragment",
    [
        ("/etc/model.onnx", "must be a path relative to"),
        ("../other/model.onnx", "must be a path relative to"),
        (["model.onnx"], "serving_artifact must be a non-empty string, got list"),
        (7, "serving_artifact must be a non-empty string, got int"),
    ],
)
def test_a_serving_artifact_outside_the_model_directory_is_refused(tmp_path, model_dir, artifact, fragment):
    version = tmp_path / "version"
    shutil.copytree(model_dir, version)
    shutil.copytree(model_dir, tmp_path / "other")
    metadata = json.loads((version / "metadata.json").read_text())
    (version / "metadata.json").write_text(json.dumps({**metadata, "serving_artifact": artifact}))
    with pytest.raises(ModelLoadError) as caught:
        load_bundle(str(version))
    assert "metadata.json" in str(caught.value) and fragment in str(caught.value)


class _Redirector(BaseHTTPRequestHandler):
    """Answers every request with a redirect to `target`, like a hostile or misconfigured endpoint."""

    target = ""

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_the_bearer_token_never_follows_a_redirect():
    recorder = HTTPServer(("127.0.0.1", 0), _Recorder)
    _Redirector.target = f"http://127.0.0.1:{recorder.server_port}/stolen"
    redirector = HTTPServer(("127.0.0.1", 0), _Redirector)
    for server in (recorder, redirector):
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        request = gcs.build_request(
            "gs://b/o", "secret-token", environ={"STORAGE_EMULATOR_HOST": f"127.0.0.1:{redirector.server_port}"}
        )
        with pytest.raises(gcs.GcsError, match="redirect refused"):
            gcs._send(request, "gs://b/o", retries=1)
    finally:
        recorder.shutdown()
        redirector.shutdown()
    assert _Recorder.seen == []
