"""Ingest's inputs are bounded and verified: download size, gunzip output, cached files, user-given checksums."""

import hashlib
import sys
from pathlib import Path

import pytest

from tests.conftest import make_idx_dir, serve_directory
from trainer import cli
from trainer.data import idx, ingest


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated local target (buckets and download cache under tmp_path), no Debian directory."""
    values = {
        "FMNIST_ENV": "local",
        "FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"),
        "FMNIST_DATA__DEBIAN_DIR": str(tmp_path / "no-debian"),
        "FMNIST_DATA__CACHE_DIR": str(tmp_path / "cache"),
        "FMNIST_DATA__DOWNLOAD_URL": "http://127.0.0.1:9/",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    return values


@pytest.fixture
def served(tmp_path):
    """Generated IDX files behind a local HTTP server: a non-canonical download URL."""
    directory = make_idx_dir(tmp_path / "served", n_train=100, n_test=30)
    with serve_directory(directory) as url:
        yield directory, url


def run_ingest(capsys, *args):
    rc = cli.main(["ingest", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def sha256_args(directory: Path) -> list[str]:
    return [
        arg
        for name in idx.FILE_NAMES.values()
        for arg in ("--sha256", f"{name}={hashlib.sha256((directory / name).read_bytes()).hexdigest()}")
    ]


def stored(env) -> list[Path]:
    return [p for p in Path(env["FMNIST_STORAGE_ROOT"]).rglob("*") if p.is_file()]


def test_gunzip_stops_at_its_bound(monkeypatch, tmp_path):
    directory = make_idx_dir(tmp_path / "idx", n_train=100, n_test=30)
    data = (directory / idx.FILE_NAMES["train_images"]).read_bytes()
    assert len(idx.gunzip(data, "train")) == 16 + 100 * 784
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 1000)
    with pytest.raises(idx.IdxError, match="decompresses to more than 1,000 bytes"):
        idx.gunzip(data, "train")


def test_the_gunzip_bound_admits_the_official_files():
    assert idx.MAX_IDX_BYTES > 47_040_016


def test_a_download_over_the_size_limit_is_refused_and_leaves_nothing(env, served, monkeypatch, capsys):
    _, url = served
    monkeypatch.setattr(ingest, "MAX_DOWNLOAD_BYTES", 100)
    rc, _, err = run_ingest(capsys, "--source", url)
    assert rc == 1 and "more than 100 bytes" in err and "--source DIR" in err
    assert not list(Path(env["FMNIST_DATA__CACHE_DIR"]).rglob("*.gz*")) and stored(env) == []


def test_a_non_canonical_download_is_not_reused_from_the_cache_unverified(env, served, capsys):
    directory, url = served
    assert run_ingest(capsys, "--source", url)[0] == 0
    (directory / idx.FILE_NAMES["train_images"]).unlink()  # the cache still has it, but nothing vouches for it
    rc, out, err = run_ingest(capsys, "--source", url)
    assert rc == 1 and "cannot download" in err and "downloaded afresh" in out


def test_with_checksums_the_cache_is_reused_and_verified(env, served, capsys):
    directory, url = served
    checksums = sha256_args(directory)
    assert run_ingest(capsys, "--source", url, *checksums)[0] == 0
    (directory / idx.FILE_NAMES["train_images"]).unlink()
    assert run_ingest(capsys, "--source", url, *checksums)[0] == 0  # from the verified cache


def test_a_checksum_mismatch_stops_any_source_before_anything_is_stored(env, served, capsys):
    directory, _ = served
    wrong = ["--sha256", f"{idx.FILE_NAMES['test_labels']}={'0' * 64}"]
    rc, _, err = run_ingest(capsys, "--source", str(directory), *wrong)
    assert rc == 1 and "differs from the expected" in err and idx.FILE_NAMES["test_labels"] in err
    assert stored(env) == []


@pytest.mark.parametrize("value", ["x.gz=" + "0" * 64, "train-images-idx3-ubyte.gz=abc", "no-equals"])
def test_a_malformed_checksum_argument_is_explained(env, served, capsys, value):
    directory, _ = served
    rc, _, err = run_ingest(capsys, "--source", str(directory), "--sha256", value)
    assert rc == 1 and "expected FILE=HEX" in err
