"""`python -m trainer ingest` through the real CLI: sources, versions, no-op, and bad input writing nothing."""

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import storage
from settings import REPO_ROOT, load_config
from tests.conftest import make_idx_dir, serve_directory, write_idx
from trainer import cli
from trainer.data import idx
from trainer.data.dataset import DatasetError, load_dataset


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated local target: buckets, cache and a Debian dir (absent by default) under tmp_path."""
    values = {
        "FMNIST_ENV": "local",
        "FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"),
        "FMNIST_DATA__DEBIAN_DIR": str(tmp_path / "no-debian"),
        "FMNIST_DATA__CACHE_DIR": str(tmp_path / "cache"),
        "FMNIST_DATA__DOWNLOAD_URL": "http://127.0.0.1:9/",  # discard port: nothing listens
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    return values


def ingest(capsys, *args):
    rc = cli.main(["ingest", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def settings_now():
    return load_config()


def stored_files(root: str) -> list[str]:
    return storage.list_uris(str(Path(root) / "datasets"))


def test_ingest_directory_stores_content_addressed_version_with_manifest(env, idx_dir, capsys):
    rc, out, _ = ingest(capsys, "--source", str(idx_dir))
    assert rc == 0
    settings = settings_now()
    hashes = [hashlib.sha256((idx_dir / idx.FILE_NAMES[r]).read_bytes()).hexdigest() for r in idx.ROLES]
    version = "v-" + hashlib.sha256("".join(hashes).encode()).hexdigest()[:12]
    base = Path(settings.datasets_bucket) / "fashion-mnist"
    assert (base / "LATEST").read_text().strip() == version
    assert sorted(p.name for p in (base / "versions" / version).iterdir()) == sorted(
        [*idx.FILE_NAMES.values(), "manifest.json"]
    )
    manifest = json.loads((base / "versions" / version / "manifest.json").read_text())
    assert manifest["version"] == version
    assert manifest["counts"] == {"train": 600, "test": 200}
    assert manifest["class_distribution"] == {"train": [60] * 10, "test": [20] * 10}
    assert [manifest["files"][r]["sha256"] for r in idx.ROLES] == hashes
    assert manifest["source"] == {"kind": "directory", "location": str(idx_dir)}
    assert manifest["official"] is False and manifest["created_at"].endswith("+00:00")
    assert f"stored dataset version {version}" in out


def test_reingest_of_same_data_is_a_noop_that_says_so(env, idx_dir, capsys):
    assert ingest(capsys, "--source", str(idx_dir))[0] == 0
    manifest = next(Path(env["FMNIST_STORAGE_ROOT"]).rglob("manifest.json"))
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    rc, out, _ = ingest(capsys, "--source", str(idx_dir))
    assert rc == 0
    assert "already stored" in out and "nothing to do" in out
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before


def test_custom_data_warns_and_require_official_refuses(env, idx_dir, capsys):
    rc, _, err = ingest(capsys, "--source", str(idx_dir))
    assert rc == 0 and "warning: not the published Fashion-MNIST files" in err
    rc, _, err = ingest(
        capsys,
        "--source",
        str(make_idx_dir(Path(env["FMNIST_STORAGE_ROOT"]).parent / "b", seed=5)),
        "--require-official",
    )
    assert rc == 1 and "--require-official" in err


def test_load_dataset_returns_the_ingested_arrays(env, idx_dir, capsys):
    ingest(capsys, "--source", str(idx_dir))
    data = load_dataset(settings_now())
    files = idx.validate_set({r: (idx_dir / idx.FILE_NAMES[r]).read_bytes() for r in idx.ROLES})
    np.testing.assert_array_equal(data.x_train, files.files["train_images"].array)
    np.testing.assert_array_equal(data.y_test, files.files["test_labels"].array)
    assert data.x_train.shape == (600, 28, 28) and data.y_train.dtype == np.uint8
    assert data.version == files.version and data.manifest["version"] == data.version


def test_load_dataset_rejects_a_changed_file(env, idx_dir, capsys):
    ingest(capsys, "--source", str(idx_dir))
    settings = settings_now()
    version = load_dataset(settings).version
    target = Path(settings.datasets_bucket, "fashion-mnist", "versions", version, idx.FILE_NAMES["test_labels"])
    write_idx(target, np.ones(200, dtype=np.uint8))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: sha256 differs"):
        load_dataset(settings)


def test_load_dataset_without_ingest_says_to_run_ingest(env):
    with pytest.raises(DatasetError, match="run `python -m trainer ingest`"):
        load_dataset(settings_now())
    with pytest.raises(DatasetError, match="v-000000000000 does not exist"):
        load_dataset(settings_now(), "v-000000000000")


def _break(directory: Path, how: str) -> str:
    """Damage one file of a valid set; returns the file name the error must mention."""
    names = idx.FILE_NAMES
    if how == "truncated gzip":
        path = directory / names["train_images"]
        path.write_bytes(path.read_bytes()[:-100])
    elif how == "wrong magic":
        path = directory / names["train_labels"]
        raw = bytearray(gzip.decompress(path.read_bytes()))
        raw[0] = 0x12
        path.write_bytes(gzip.compress(bytes(raw)))
    elif how == "mismatched counts":
        path = directory / names["train_labels"]
        write_idx(path, (np.arange(599) % 10).astype(np.uint8))
    elif how == "labels out of range":
        path = directory / names["test_labels"]
        write_idx(path, (np.arange(200) % 11).astype(np.uint8))
    elif how == "wrong dims":
        path = directory / names["test_images"]
        write_idx(path, np.zeros((200, 32, 32), dtype=np.uint8))
    elif how == "missing file":
        path = directory / names["test_labels"]
        path.unlink()
    return path.name


@pytest.mark.parametrize(
    "how,problem",
    [
        ("truncated gzip", "truncated gzip file"),
        ("wrong magic", "wrong IDX magic number 0x12000801"),
        ("mismatched counts", "600 images but 599 labels"),
        ("labels out of range", "labels are outside 0-9"),
        ("wrong dims", "images are 32x32, expected 28x28"),
        ("missing file", "file is missing"),
    ],
)
def test_bad_input_exits_nonzero_with_one_clear_message_and_writes_nothing(env, idx_dir, capsys, how, problem):
    name = _break(idx_dir, how)
    rc, _, err = ingest(capsys, "--source", str(idx_dir))
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert name in lines[0] and problem in lines[0] and "Fix: " in lines[0]
    assert "nothing was written" in lines[0]
    assert stored_files(env["FMNIST_STORAGE_ROOT"]) == []


def test_unreadable_source_bucket_exits_nonzero_and_writes_nothing(env, gcs_bucket, capsys):
    rc, _, err = ingest(capsys, "--source", "gs://no-such-bucket-for-ingest/raw")
    assert rc == 1
    assert "cannot read the source bucket gs://no-such-bucket-for-ingest/raw" in err
    assert len(err.strip().splitlines()) == 1
    assert stored_files(env["FMNIST_STORAGE_ROOT"]) == []


def test_missing_source_directory_is_named(env, tmp_path, capsys):
    rc, _, err = ingest(capsys, "--source", str(tmp_path / "nowhere"))
    assert rc == 1 and f"{tmp_path / 'nowhere'}: source directory does not exist" in err


def test_gcs_source_is_read_through_google_cloud_storage(env, gcs_bucket, idx_dir, capsys):
    for name in idx.FILE_NAMES.values():
        storage.upload_file(idx_dir / name, f"{gcs_bucket}/raw/{name}")
    rc, out, _ = ingest(capsys, "--source", f"{gcs_bucket}/raw")
    assert rc == 0, out
    manifest = load_dataset(settings_now()).manifest
    assert manifest["source"] == {"kind": "gcs", "location": f"{gcs_bucket}/raw"}


def test_failed_write_leaves_no_partial_version(env, idx_dir, capsys, monkeypatch):
    real_write = storage.write_bytes
    calls = []

    def flaky_write(uri, data, **kwargs):
        calls.append(uri)
        if len(calls) == 3:
            raise storage.StorageError(f"{uri}: disk full")
        return real_write(uri, data, **kwargs)

    monkeypatch.setattr(storage, "write_bytes", flaky_write)
    rc, _, err = ingest(capsys, "--source", str(idx_dir))
    assert rc == 1 and "disk full" in err
    assert stored_files(env["FMNIST_STORAGE_ROOT"]) == []


# ---- default source order ----------------------------------------------------------------------------------


def test_configured_source_comes_first(env, idx_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_DATA__SOURCE", str(idx_dir))
    monkeypatch.setenv("FMNIST_DATA__DEBIAN_DIR", str(make_idx_dir(tmp_path / "debian", seed=7)))
    assert ingest(capsys)[0] == 0
    assert load_dataset(settings_now()).manifest["source"]["location"] == str(idx_dir)


def test_debian_directory_is_used_when_nothing_is_configured(env, tmp_path, monkeypatch, capsys):
    debian = make_idx_dir(tmp_path / "debian", seed=7)
    monkeypatch.setenv("FMNIST_DATA__DEBIAN_DIR", str(debian))
    assert ingest(capsys)[0] == 0
    assert load_dataset(settings_now()).manifest["source"] == {"kind": "directory", "location": str(debian)}


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server (127.0.0.1) serving generated IDX files: the canonical download, offline."""
    served = make_idx_dir(tmp_path / "served", n_train=100, n_test=30)
    with serve_directory(served) as url:
        yield served, url


def _publish(monkeypatch, directory: Path):
    """Pretend the served files are the published ones (their gz MD5 becomes the published checksum)."""
    table = {
        role: idx.PublishedChecksums(
            hashlib.md5((directory / name).read_bytes()).hexdigest(), idx.PUBLISHED[role].content_md5
        )
        for role, name in idx.FILE_NAMES.items()
    }
    monkeypatch.setattr(idx, "PUBLISHED", table)


def test_download_is_verified_and_cached_when_no_local_source_exists(env, http_server, monkeypatch, capsys):
    served, url = http_server
    monkeypatch.setenv("FMNIST_DATA__DOWNLOAD_URL", url)
    _publish(monkeypatch, served)
    rc, out, _ = ingest(capsys)
    assert rc == 0, out
    cached = sorted(p.name for p in Path(env["FMNIST_DATA__CACHE_DIR"]).rglob("*.gz"))
    assert cached == sorted(idx.FILE_NAMES.values())
    assert load_dataset(settings_now()).manifest["source"] == {"kind": "url", "location": url}
    (served / idx.FILE_NAMES["train_images"]).unlink()  # a second run uses the verified cache, not the network
    assert ingest(capsys)[0] == 0


def test_download_with_wrong_checksum_fails_and_writes_nothing(env, http_server, monkeypatch, capsys):
    served, url = http_server
    monkeypatch.setenv("FMNIST_DATA__DOWNLOAD_URL", url)  # published table untouched: generated files mismatch
    rc, _, err = ingest(capsys)
    assert rc == 1
    assert f"{url}train-images-idx3-ubyte.gz: downloaded file's MD5" in err and "differs from the published" in err
    assert stored_files(env["FMNIST_STORAGE_ROOT"]) == []
    assert not list(Path(env["FMNIST_DATA__CACHE_DIR"]).rglob("train-images*"))


def test_unreachable_download_says_how_to_get_the_data(env, capsys):
    rc, _, err = ingest(capsys)
    assert rc == 1
    assert "cannot download http://127.0.0.1:9/train-images-idx3-ubyte.gz" in err
    assert "apt-get install dataset-fashion-mnist" in err
    assert stored_files(env["FMNIST_STORAGE_ROOT"]) == []


def test_command_line_process_exits_1_with_one_line(env, idx_dir):
    _break(idx_dir, "truncated gzip")
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "ingest", "--source", str(idx_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "train-images-idx3-ubyte.gz: truncated gzip file" in proc.stderr


def test_reingest_of_an_older_version_moves_latest_back(env, idx_dir, tmp_path, capsys):
    assert ingest(capsys, "--source", str(idx_dir))[0] == 0
    first = load_dataset(settings_now()).version
    assert ingest(capsys, "--source", str(make_idx_dir(tmp_path / "other", seed=9)))[0] == 0
    second = load_dataset(settings_now()).version
    rc, out, _ = ingest(capsys, "--source", str(idx_dir))
    assert rc == 0 and first != second
    assert f"LATEST now points to it (was {second})" in out
    assert load_dataset(settings_now()).version == first
