"""Storage at its edges, against the real google-cloud-storage client and the GCS emulator: prefixes that share
a beginning, trailing slashes, content types, the error each call site raises (naming its URI), downloads that
stay invisible until complete, and which client is built."""

import re
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage as gcs

import storage


@pytest.fixture(autouse=True)
def _private_cwd(tmp_path, monkeypatch):
    """A relative path written by mistake lands in this test's directory, not where the next test looks."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    return str(tmp_path / "bucket") if request.param == "local" else request.getfixturevalue("gcs_bucket")


def names(uris, base):
    return [uri[len(base) + 1 :] for uri in uris]


def test_a_prefix_lists_its_own_directory_only(root):
    for name in ("a/x", "a/sub/y", "ab/z", "b"):
        storage.write_bytes(storage.join(root, name), name.encode())
    assert names(storage.list_uris(storage.join(root, "a")), root) == ["a/sub/y", "a/x"]
    assert names(storage.list_uris(storage.join(root, "a") + "/"), root) == ["a/sub/y", "a/x"]
    assert names(storage.list_uris(root), root) == ["a/sub/y", "a/x", "ab/z", "b"]
    assert storage.list_uris(storage.join(root, "missing")) == []


def test_copy_tree_keeps_relative_paths_with_or_without_a_trailing_slash(root, tmp_path):
    for name in ("runX/model.onnx", "runX/sub/deep.bin", "runX/Xy.bin"):  # names may begin or end with anything
        storage.write_bytes(storage.join(root, name), name.encode())
    for source in (storage.join(root, "runX"), storage.join(root, "runX") + "/"):
        for dest in (storage.join(root, "copy"), str(tmp_path / "local-copy")):
            written = storage.copy_tree(source, dest)
            assert names(written, dest) == ["Xy.bin", "model.onnx", "sub/deep.bin"]
            for rel in ("Xy.bin", "model.onnx", "sub/deep.bin"):
                assert storage.read_bytes(storage.join(dest, rel)) == f"runX/{rel}".encode()


def test_delete_tree_removes_every_file_under_the_prefix_only(root):
    for name in ("staging/a", "staging/b/c", "staging-other/d"):
        storage.write_bytes(storage.join(root, name), b"1")
    storage.delete_tree(storage.join(root, "staging"))
    assert names(storage.list_uris(root), root) == ["staging-other/d"]
    storage.delete_tree(storage.join(root, "staging"))  # nothing left: not an error


def test_objects_carry_their_content_types(gcs_bucket):
    def content_type(name):
        blob = storage.gcs_client().bucket(gcs_bucket[5:]).get_blob(name)
        return blob.content_type

    storage.write_bytes(f"{gcs_bucket}/raw.bin", b"\x00")
    storage.write_bytes(f"{gcs_bucket}/data.gz", b"\x00", content_type="application/gzip")
    storage.write_text(f"{gcs_bucket}/note.txt", "hi")
    storage.write_text(f"{gcs_bucket}/m.json", "{}", content_type="application/json")
    first = storage.read_versioned(f"{gcs_bucket}/index.json")
    storage.write_if_unchanged(f"{gcs_bucket}/index.json", b"{}", first.token)
    second = storage.read_versioned(f"{gcs_bucket}/index.json")
    storage.write_if_unchanged(f"{gcs_bucket}/index.json", b"[]", second.token, content_type="text/x-test")
    assert content_type("raw.bin") == "application/octet-stream"
    assert content_type("data.gz") == "application/gzip"
    assert content_type("note.txt") == "text/plain; charset=utf-8"
    assert content_type("m.json") == "application/json"
    assert content_type("index.json") == "text/x-test"
    storage.delete(f"{gcs_bucket}/index.json")
    storage.write_if_unchanged(f"{gcs_bucket}/index.json", b"{}", 0)
    assert content_type("index.json") == "application/json"


def test_a_stale_local_token_names_the_file(tmp_path):
    uri = str(tmp_path / "index.json")
    storage.write_bytes(uri, b"one")
    with pytest.raises(storage.PreconditionFailed, match=r"index\.json: changed by another writer since it was read"):
        storage.write_if_unchanged(uri, b"two", "stale")


def test_a_gcs_uri_without_a_bucket_says_how_to_write_one():
    with pytest.raises(storage.StorageError, match=r"^gs://: a gs:// URI needs a bucket name \(gs://BUCKET/PATH\)$"):
        storage.split_gcs("gs://")


def _denied(*args, **kwargs):
    raise gexc.Forbidden("caller lacks storage.objects.get")


DENIED_CALLS = {
    "exists": (gcs.Blob, "exists", _denied, lambda uri, tmp: storage.exists(uri)),
    "list": (gcs.Client, "list_blobs", _denied, lambda uri, tmp: storage.list_uris(uri)),
    "read": (gcs.Blob, "download_as_bytes", _denied, lambda uri, tmp: storage.read_bytes(uri)),
    "read versioned": (gcs.Blob, "download_as_bytes", _denied, lambda uri, tmp: storage.read_versioned(uri)),
    "write": (gcs.Blob, "upload_from_string", _denied, lambda uri, tmp: storage.write_bytes(uri, b"x")),
    "compare-and-swap": (
        gcs.Blob,
        "upload_from_string",
        _denied,
        lambda uri, tmp: storage.write_if_unchanged(uri, b"x", 0),
    ),
    "upload": (gcs.Blob, "upload_from_filename", _denied, lambda uri, tmp: storage.upload_file(tmp, uri)),
    "upload with progress": (
        gcs.Blob,
        "upload_from_file",
        _denied,
        lambda uri, tmp: storage.upload_file(tmp, uri, progress=True),
    ),
    "download": (
        gcs.Blob,
        "download_to_filename",
        _denied,
        lambda uri, tmp: storage.download_file(uri, tmp.parent / "d"),
    ),
    "delete tree": (gcs.Blob, "delete", _denied, lambda uri, tmp: storage.delete_tree(uri.rsplit("/", 1)[0])),
}


@pytest.mark.parametrize("case", list(DENIED_CALLS))
def test_a_denied_call_is_one_storage_error_naming_the_uri_and_the_fix(gcs_bucket, tmp_path, monkeypatch, case):
    owner, attribute, replacement, call = DENIED_CALLS[case]
    uri = f"{gcs_bucket}/dir/object.bin"
    storage.write_bytes(uri, b"present")
    (tmp_path / "f").write_bytes(b"local")
    monkeypatch.setattr(owner, attribute, replacement)
    with pytest.raises(storage.StorageError) as failed:
        call(uri, tmp_path / "f")
    message = str(failed.value)
    assert message.startswith(f"{gcs_bucket}/dir") and "permission denied (caller lacks storage.objects.get)" in message
    assert message.endswith("check the credentials' roles on the bucket")
    assert (tmp_path / "d").exists() is False  # a failed download leaves no file behind


def test_a_download_is_invisible_until_complete_and_a_missing_object_leaves_nothing(gcs_bucket, tmp_path, monkeypatch):
    uri = f"{gcs_bucket}/model.onnx"
    storage.write_bytes(uri, b"onnx" * 1000)
    target = tmp_path / "cache" / "deep" / "model.onnx"  # parents missing: created
    real = gcs.Blob.download_to_filename
    seen = {}

    def watch(self, filename, *args, **kwargs):
        real(self, filename, *args, **kwargs)
        seen["temp"] = Path(filename)
        seen["listed"] = storage.list_uris(str(target.parent))

    monkeypatch.setattr(gcs.Blob, "download_to_filename", watch)
    assert storage.download_file(uri, target) == target and target.read_bytes() == b"onnx" * 1000
    assert seen["temp"].parent == target.parent and seen["temp"].name.startswith(".tmp-")  # same directory: rename
    assert seen["listed"] == []  # a reader listing the directory mid-download sees nothing yet
    storage.download_file(uri, target)  # again, into the existing directory
    with pytest.raises(storage.NotFound, match=r"missing\.onnx: not found"):
        storage.download_file(f"{gcs_bucket}/missing.onnx", target.parent / "missing.onnx")
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


def test_a_local_download_is_a_copy_and_a_missing_file_is_named(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"abc")
    assert storage.download_file(str(source), tmp_path / "out" / "copy.bin").read_bytes() == b"abc"
    with pytest.raises(storage.NotFound, match=r"nope\.bin: not found"):
        storage.download_file(str(tmp_path / "nope.bin"), tmp_path / "out" / "x")


def test_an_upload_with_progress_reports_the_whole_size(gcs_bucket, tmp_path, capsys):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"x" * 300_000)
    storage.upload_file(source, f"{gcs_bucket}/model.onnx", progress=True)
    assert storage.read_bytes(f"{gcs_bucket}/model.onnx") == source.read_bytes()
    err = capsys.readouterr().err
    assert "upload model.onnx" in err and "100%" in err and "/300k" in err  # the total is the file's size
    assert re.search(r"[kMG]?B/s\]", err)  # in bytes


class _Recorded:
    """Stands in for google.cloud.storage.Client, recording how it was built."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs


def test_the_emulator_gets_an_anonymous_client_for_the_configured_project(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setattr(gcs, "Client", _Recorded)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    for project, expected in ((None, "local"), ("my-project", "my-project")):
        if project:
            monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
        else:
            monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
        storage.reset_client()
        client = storage.gcs_client()
        assert client.kwargs["project"] == expected
        assert isinstance(client.kwargs["credentials"], AnonymousCredentials)
        assert storage.gcs_client() is client  # one client per process
    storage.reset_client()


def test_the_cloud_gets_a_default_client(monkeypatch):
    monkeypatch.setattr(gcs, "Client", _Recorded)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    storage.reset_client()
    client = storage.gcs_client()
    assert isinstance(client, _Recorded) and client.kwargs == {}  # Application Default Credentials and project
    storage.reset_client()


def test_a_local_upload_is_invisible_until_complete(tmp_path, monkeypatch):
    source, dest = tmp_path / "model.onnx", tmp_path / "bucket" / "v1" / "model.onnx"
    source.write_bytes(b"onnx" * 1000)
    real = storage.shutil.copyfile
    seen = {}

    def watch(src, dst, **kwargs):
        real(src, dst, **kwargs)
        seen["temp"] = Path(dst)
        seen["listed"] = storage.list_uris(str(dest.parent))

    monkeypatch.setattr(storage.shutil, "copyfile", watch)
    storage.upload_file(source, str(dest))
    assert dest.read_bytes() == source.read_bytes()
    assert seen["temp"].parent == dest.parent and seen["temp"].name.startswith(".tmp-")  # same directory: rename
    assert seen["listed"] == []


def test_a_local_write_is_renamed_from_a_hidden_temp_beside_it(tmp_path, monkeypatch):
    target = tmp_path / "bucket" / "index.json"
    real, seen = storage.os.replace, []
    monkeypatch.setattr(storage.os, "replace", lambda src, dst: (seen.append(Path(src)), real(src, dst)))
    storage.write_bytes(str(target), b"{}")
    [temp] = seen
    assert temp.parent == target.parent and temp.name.startswith(".tmp-")  # same filesystem: an atomic rename
    assert target.read_bytes() == b"{}"


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (("gs://bucketX", "Xa", "bX"), "gs://bucketX/Xa/bX"),
        (("gs://b/", "/a/", "b/"), "gs://b/a/b"),
        (("gs://b//", "a"), "gs://b/a"),
        (("gs://b", " a "), "gs://b/ a "),
    ],
)
def test_join_puts_exactly_one_slash_between_parts(parts, joined):
    assert storage.join(*parts) == joined


def test_a_prefix_ending_in_any_character_lists_only_itself(gcs_bucket):
    for name in ("runX/a", "run/b"):
        storage.write_bytes(f"{gcs_bucket}/{name}", b"1")
    assert storage.list_uris(f"{gcs_bucket}/runX") == [f"{gcs_bucket}/runX/a"]


def test_reading_what_is_not_a_file_names_it(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(storage.StorageError, match=r"dir: is a directory, expected a file$"):
        storage.read_bytes(str(tmp_path / "dir"))
    with pytest.raises(storage.StorageError, match=r"file/inner: Not a directory$"):
        storage.read_bytes(str(tmp_path / "file" / "inner"))
