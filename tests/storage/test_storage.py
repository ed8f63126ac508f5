"""Storage against the local filesystem and a real GCS emulator (fake-gcs-server), the same assertions for both."""

import threading

import pytest

import storage


@pytest.fixture(autouse=True)
def _private_cwd(tmp_path, monkeypatch):
    """A relative path written by mistake (or by a mutant) lands in this test's directory only."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "bucket")
    return request.getfixturevalue("gcs_bucket")


def test_write_read_list_roundtrip(root):
    storage.write_bytes(storage.join(root, "a/b.bin"), b"\x00\x01")
    storage.write_text(storage.join(root, "a/c.txt"), "hello")
    assert storage.read_bytes(storage.join(root, "a/b.bin")) == b"\x00\x01"
    assert storage.read_text(storage.join(root, "a/c.txt")) == "hello"
    assert [u.rsplit("/", 1)[-1] for u in storage.list_uris(storage.join(root, "a"))] == ["b.bin", "c.txt"]
    assert storage.exists(storage.join(root, "a/c.txt"))
    assert not storage.exists(storage.join(root, "a/missing"))


def test_missing_object_raises_not_found_naming_it(root):
    uri = storage.join(root, "nope.json")
    with pytest.raises(storage.NotFound, match="nope.json"):
        storage.read_bytes(uri)


def test_compare_and_swap_rejects_stale_token(root):
    uri = storage.join(root, "index.json")
    first = storage.read_versioned(uri)
    assert first.data is None
    storage.write_if_unchanged(uri, b"one", first.token)
    with pytest.raises(storage.PreconditionFailed):
        storage.write_if_unchanged(uri, b"two", first.token)  # create-if-absent of an existing object
    current = storage.read_versioned(uri)
    storage.write_if_unchanged(uri, b"three", current.token)
    with pytest.raises(storage.PreconditionFailed):
        storage.write_if_unchanged(uri, b"four", current.token)  # stale token
    assert storage.read_bytes(uri) == b"three"


def test_concurrent_increments_lose_no_update(root):
    uri = storage.join(root, "counter")
    storage.write_bytes(uri, b"0")

    def bump(times):
        for _ in range(times):
            while True:
                current = storage.read_versioned(uri)
                try:
                    storage.write_if_unchanged(uri, str(int(current.data) + 1).encode(), current.token)
                    break
                except storage.PreconditionFailed:
                    continue

    threads = [threading.Thread(target=bump, args=(10,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.read_bytes(uri) == b"30"


def test_upload_download_and_copy_tree(root, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100_000)
    storage.upload_file(src, storage.join(root, "up/src.bin"), progress=True)
    out = storage.download_file(storage.join(root, "up/src.bin"), tmp_path / "down" / "src.bin")
    assert out.read_bytes() == src.read_bytes()
    copied = storage.copy_tree(storage.join(root, "up"), str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "src.bin").read_bytes() == src.read_bytes()
    assert len(copied) == 1


def test_local_write_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "d" / "f.bin"
    storage.write_bytes(str(target), b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", boom)
    with pytest.raises(storage.StorageError, match="f.bin"):
        storage.write_bytes(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_local_files_get_normal_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        storage.write_bytes(str(tmp_path / "f"), b"x")
        storage.upload_file(tmp_path / "f", str(tmp_path / "g"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == stat.S_IMODE((tmp_path / "g").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) & 0o044 == 0o044


def test_delete_one_object_and_missing_is_fine(root):
    uri = storage.join(root, "x/one.bin")
    storage.write_bytes(uri, b"1")
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)
