"""Where ingest reads from, exactly: how a --source is understood, what a missing or unreadable file says, where
downloads are cached and when the cache is trusted, and the words of each failure."""

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

import storage
from settings import load_config
from tests.conftest import make_idx_dir
from trainer.data import idx
from trainer.data.ingest import Source, fetch
from trainer.errors import CommandError

ALL_FOUR = ", ".join(idx.FILE_NAMES.values())


@pytest.mark.parametrize(
    ("given", "kind", "location"),
    [
        ("gs://bucket/raw/", "gcs", "gs://bucket/raw"),
        ("gs://bucket/raw", "gcs", "gs://bucket/raw"),
        ("gs://bucketX/rawX", "gcs", "gs://bucketX/rawX"),
        ("https://example.com/data", "url", "https://example.com/data/"),
        ("http://example.com/data/", "url", "http://example.com/data/"),
        ("/srv/fashion-mnist", "directory", "/srv/fashion-mnist"),
    ],
)
def test_a_source_is_understood_exactly(given, kind, location):
    assert Source.parse(given) == Source(kind, location)


def test_a_home_directory_source_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Source.parse("~/data") == Source("directory", str(tmp_path / "data"))


@pytest.fixture
def settings(tmp_path):
    return load_config(
        "local",
        environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"), "FMNIST_DATA__CACHE_DIR": str(tmp_path / "cache")},
    )


def test_a_file_missing_from_a_bucket_is_named_with_the_four_it_needs(gcs_bucket, idx_dir, settings):
    for role, name in idx.FILE_NAMES.items():
        if role != "test_images":
            storage.upload_file(idx_dir / name, f"{gcs_bucket}/raw/{name}")
    with pytest.raises(idx.IdxError) as caught:
        fetch(Source.parse(f"{gcs_bucket}/raw"), settings)
    assert str(caught.value) == (
        f"{gcs_bucket}/raw/t10k-images-idx3-ubyte.gz: file is missing. Fix: {gcs_bucket}/raw must hold all four "
        f"files: {ALL_FOUR}"
    )


def test_a_bucket_source_gives_each_file_its_uri(gcs_bucket, idx_dir, settings):
    for name in idx.FILE_NAMES.values():
        storage.upload_file(idx_dir / name, f"{gcs_bucket}/raw/{name}")
    blobs, names = fetch(Source.parse(f"{gcs_bucket}/raw/"), settings)
    assert names == {role: f"{gcs_bucket}/raw/{name}" for role, name in idx.FILE_NAMES.items()}
    assert blobs == {role: (idx_dir / name).read_bytes() for role, name in idx.FILE_NAMES.items()}


def test_an_unreadable_bucket_and_an_unreadable_object_say_which_role_to_grant(
    gcs_bucket, idx_dir, settings, monkeypatch
):
    with pytest.raises(CommandError) as caught:
        fetch(Source.parse("gs://no-such-bucket-x/raw"), settings)
    assert str(caught.value).startswith("cannot read the source bucket gs://no-such-bucket-x/raw: ")
    assert str(caught.value).endswith(
        "Fix: check the bucket name and that these credentials may read it (roles/storage.objectViewer)"
    )
    for name in idx.FILE_NAMES.values():
        storage.upload_file(idx_dir / name, f"{gcs_bucket}/raw/{name}")

    def denied(uri):
        raise storage.StorageError(f"{uri}: permission denied")

    monkeypatch.setattr(storage, "read_bytes", denied)
    first = f"{gcs_bucket}/raw/{idx.FILE_NAMES['train_images']}"
    with pytest.raises(CommandError) as caught:
        fetch(Source.parse(f"{gcs_bucket}/raw"), settings)
    assert str(caught.value) == (
        f"cannot read {first}: {first}: permission denied. Fix: check that these credentials may read it"
    )


def test_a_file_missing_from_a_directory_is_named(tmp_path, settings):
    directory = make_idx_dir(tmp_path / "src")
    (directory / idx.FILE_NAMES["train_labels"]).unlink()
    with pytest.raises(idx.IdxError) as caught:
        fetch(Source.parse(str(directory)), settings)
    assert str(caught.value) == (
        f"{directory / idx.FILE_NAMES['train_labels']}: file is missing. Fix: {directory} must hold all four files: "
        f"{ALL_FOUR}"
    )


@pytest.fixture
def served(tmp_path):
    directory = make_idx_dir(tmp_path / "served" / "mirror", n_train=50, n_test=20)
    hits = []

    class Counting(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Counting, directory=str(directory.parent))
    )
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield directory, f"http://127.0.0.1:{server.server_address[1]}/mirror", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_mirror_download_is_cached_under_its_url_and_reused(served, settings, tmp_path, capsys):
    directory, url, hits = served
    blobs, names = fetch(Source.parse(url), settings)
    slug = hashlib.sha256((url + "/").encode()).hexdigest()[:12]
    cache = tmp_path / "cache" / "downloads" / slug
    assert sorted(p.name for p in cache.iterdir()) == sorted(idx.FILE_NAMES.values())  # no .part left
    assert names == {role: f"{url}/{name}" for role, name in idx.FILE_NAMES.items()}
    assert blobs == {role: (directory / name).read_bytes() for role, name in idx.FILE_NAMES.items()}
    assert capsys.readouterr().out.splitlines()[-1] == f"downloaded files cached in {cache}"
    assert len(hits) == 4
    # a mirror has no published MD5s: its cached files are reused only when the user's --sha256 verifies them
    fetch(Source.parse(url), settings)
    assert len(hits) == 8
    checksums = {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in idx.FILE_NAMES.values()}
    fetch(Source.parse(url), settings, checksums)
    assert len(hits) == 8


def test_an_unreachable_url_is_one_error_with_the_ways_to_get_the_data(settings):
    with pytest.raises(CommandError) as caught:
        fetch(Source.parse("http://127.0.0.1:9/x"), settings)
    assert str(caught.value) == (
        "cannot download http://127.0.0.1:9/x/train-images-idx3-ubyte.gz: [Errno 111] Connection refused. Fix: "
        "check the network, or install the Debian package (sudo apt-get install dataset-fashion-mnist), or pass "
        "--source DIR holding the four files"
    )  # the URLError's reason, not its whole repr


def test_a_corrupt_canonical_download_is_deleted_with_one_error(served, tmp_path):
    directory, url, _ = served
    settings = load_config(
        "local",
        environ={
            "FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"),
            "FMNIST_DATA__CACHE_DIR": str(tmp_path / "cache"),
            "FMNIST_DATA__DOWNLOAD_URL": url,
        },
    )
    got = hashlib.md5((directory / idx.FILE_NAMES["train_images"]).read_bytes()).hexdigest()
    with pytest.raises(CommandError) as caught:
        fetch(Source.parse(url), settings)
    assert str(caught.value) == (
        f"{url}/train-images-idx3-ubyte.gz: downloaded file's MD5 {got} differs from the published "
        f"{idx.PUBLISHED['train_images'].gz_md5}; the download is corrupt or the server changed. Fix: run ingest "
        "again; if it persists, install the Debian package dataset-fashion-mnist"
    )
    assert not list(Path(tmp_path / "cache").rglob("train-images*"))


def test_a_source_directory_that_is_missing_or_unreadable_is_named(tmp_path, settings):
    with pytest.raises(CommandError) as caught:
        fetch(Source.parse(str(tmp_path / "nowhere")), settings)
    assert str(caught.value) == (
        f"{tmp_path / 'nowhere'}: source directory does not exist. Fix: pass --source with a directory, gs:// URI or "
        "URL that holds the four Fashion-MNIST .gz files"
    )
    directory = make_idx_dir(tmp_path / "src")
    images = directory / idx.FILE_NAMES["train_images"]
    images.unlink()
    images.mkdir()  # unreadable as a file
    with pytest.raises(CommandError) as caught:
        fetch(Source.parse(str(directory)), settings)
    assert str(caught.value) == f"{images}: cannot read (Is a directory). Fix: check the file's permissions"


def test_without_a_configured_source_or_debian_files_ingest_says_it_downloads(tmp_path, capsys):
    from trainer.data.ingest import choose_source

    settings = load_config(
        "local",
        environ={
            "FMNIST_STORAGE_ROOT": str(tmp_path),
            "FMNIST_DATA__DEBIAN_DIR": str(tmp_path / "no-debian"),
            "FMNIST_DATA__DOWNLOAD_URL": "https://example.com/fmnist",
        },
    )
    assert choose_source(settings, None) == Source("url", "https://example.com/fmnist/")
    assert capsys.readouterr().out == (
        f"{tmp_path / 'no-debian'} does not hold the four files (Debian package dataset-fashion-mnist not "
        "installed); downloading from https://example.com/fmnist\n"
    )


DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_the_official_files_are_stored_as_official(settings, capsys):
    from trainer.data.ingest import ingest

    version = ingest(settings, Source("directory", str(DEBIAN)), require_official=True)
    assert (
        "(60,000 train / 10,000 test images, official Fashion-MNIST); LATEST -> " + version in capsys.readouterr().out
    )


def test_custom_files_with_require_official_are_refused_in_words(settings, tmp_path):
    from trainer.data.ingest import ingest

    with pytest.raises(CommandError) as caught:
        ingest(settings, Source("directory", str(make_idx_dir(tmp_path / "c"))), require_official=True)
    assert str(caught.value) == (
        "the files are not the published Fashion-MNIST files and --require-official was given (nothing was "
        "written). Fix: ingest the official files, or drop --require-official"
    )


def test_a_datasets_bucket_that_cannot_be_read_is_one_error(settings, idx_dir, monkeypatch):
    from trainer.data.ingest import ingest

    def unreadable(uri):
        raise storage.StorageError(f"{uri}: permission denied")

    monkeypatch.setattr(storage, "read_text", unreadable)
    with pytest.raises(CommandError, match=r"^cannot read the datasets bucket: .+manifest\.json: permission denied$"):
        ingest(settings, Source("directory", str(idx_dir)))


def test_the_command_names_the_datasets_bucket_when_storing_fails(tmp_path, idx_dir, monkeypatch, capsys):
    import sys

    from trainer import cli

    monkeypatch.setenv("FMNIST_ENV", "local")
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    real = storage.read_text

    def latest_unreadable(uri):
        if uri.endswith("LATEST"):
            raise storage.StorageError(f"{uri}: permission denied")
        return real(uri)

    monkeypatch.setattr(storage, "read_text", latest_unreadable)
    assert cli.main(["ingest", "--source", str(idx_dir)]) == 1
    bucket = load_config().datasets_bucket
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == f"error: datasets bucket {bucket}: {bucket}/fashion-mnist/LATEST: permission denied"
