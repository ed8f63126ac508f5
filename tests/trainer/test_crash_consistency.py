"""Crash consistency: a writer killed (SIGKILL, in a child process) or failing between its writes leaves nothing a
reader takes for complete, and running it again repairs the state. Covers ingest (manifest last), the registry's
register (record last), export's registration, and storage's atomic writes, uploads and copy_tree."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import storage
from contracts.layout import MANIFEST_FILE
from settings import REPO_ROOT, load_config
from tests.conftest import make_idx_dir
from trainer import cli
from trainer.data import idx
from trainer.data.dataset import DatasetError, load_dataset
from trainer.models.registry import ModelRegistry

KILLER = """
import os, signal, sys
import storage
name, kill_at = sys.argv[1], int(sys.argv[2])
module, _, attr = name.rpartition(".")
owner = storage if not module else __import__(module, fromlist=["_"])
real, calls = getattr(owner, attr), []
def dying(*args, **kwargs):
    calls.append(args)
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(owner, attr, dying)
"""


def run_killed(target: str, kill_at: int, body: str, env: dict) -> subprocess.CompletedProcess:
    """Run `body` in a child process that SIGKILLs itself as it enters the kill_at-th call of `target`
    (`write_bytes` means storage.write_bytes; `os.replace` the real one)."""
    code = KILLER + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, target, str(kill_at)],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- ingest: the four files, then the manifest, then LATEST -----------------------------------------------------


@pytest.fixture
def ingest_env(tmp_path, monkeypatch):
    values = {
        "FMNIST_ENV": "local",
        "FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"),
        "FMNIST_DATA__DEBIAN_DIR": str(tmp_path / "no-debian"),
        "FMNIST_DATA__CACHE_DIR": str(tmp_path / "cache"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    return values


def version_dirs(root: str) -> list[Path]:
    base = Path(root) / "datasets"
    return sorted(p for p in base.rglob("v-*") if p.is_dir()) if base.exists() else []


@pytest.mark.parametrize("kill_at", [1, 3, 5], ids=["before the first file", "after two files", "before manifest"])
def test_ingest_killed_between_writes_is_never_complete_and_a_rerun_repairs_it(ingest_env, idx_dir, kill_at, capsys):
    killed = run_killed(
        "write_bytes", kill_at, f"from trainer import cli; cli.main(['ingest', '--source', {str(idx_dir)!r}])", {}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    for directory in version_dirs(ingest_env["FMNIST_STORAGE_ROOT"]):
        assert not (directory / MANIFEST_FILE).exists(), "a manifest was written before all the files"
    with pytest.raises(DatasetError, match="ingest"):  # the reader says what to do; it reads no partial version
        load_dataset(load_config())

    assert cli.main(["ingest", "--source", str(idx_dir)]) == 0
    assert "stored dataset version" in capsys.readouterr().out  # not "already stored": it was never complete
    data = load_dataset(load_config())  # every file checked against the manifest's sha256
    [directory] = version_dirs(ingest_env["FMNIST_STORAGE_ROOT"])
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    for role, name in idx.FILE_NAMES.items():
        assert sha256(directory / name) == manifest["files"][role]["sha256"] == sha256(idx_dir / name)
    assert len(data.y_train) == 600


def test_ingest_killed_before_latest_moves_keeps_serving_the_previous_version(ingest_env, idx_dir, tmp_path, capsys):
    assert cli.main(["ingest", "--source", str(idx_dir)]) == 0
    first = load_dataset(load_config()).version
    other = make_idx_dir(tmp_path / "other", seed=5)
    killed = run_killed(
        "write_text", 2, f"from trainer import cli; cli.main(['ingest', '--source', {str(other)!r}])", {}
    )  # write_text 1 is the new manifest, 2 is LATEST
    assert killed.returncode == -signal.SIGKILL
    assert load_dataset(load_config()).version == first
    assert cli.main(["ingest", "--source", str(other)]) == 0
    assert "already stored" in capsys.readouterr().out  # complete (manifest written): only LATEST moves
    assert load_dataset(load_config()).version != first


# ---- the registry: files, then the record ---------------------------------------------------------------------


def model_files(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name, size in [("model.onnx", 300_000), ("metadata.json", 200), ("samples.npz", 50_000)]:
        (directory / name).write_bytes(os.urandom(size))
    return directory


REGISTER = """
from trainer.models.registry import ModelRegistry
ModelRegistry({root!r}).register({source!r}, {{"accuracy": 0.9}}, "custom", dataset_version="v-1", version="v1-crash")
"""


@pytest.mark.parametrize("kill_at", [1, 2, 3], ids=["before the first file", "after one file", "before the record"])
def test_register_killed_between_writes_leaves_no_record_and_a_rerun_repairs_it(tmp_path, kill_at):
    source, root = model_files(tmp_path / "model"), str(tmp_path / "models")
    target = "write_if_unchanged" if kill_at == 3 else "upload_file"
    killed = run_killed(target, 1 if kill_at == 3 else kill_at, REGISTER.format(root=root, source=str(source)), {})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    registry = ModelRegistry(root)
    assert "v1-crash" not in registry.read_index().to_json()["versions"]  # no reader resolves it

    assert registry.register(str(source), {"accuracy": 0.9}, "custom", dataset_version="v-1", version="v1-crash")
    record = registry.read_index().to_json()["versions"]["v1-crash"]
    copied = Path(root) / record["path"]
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in source.iterdir())
    for path in source.iterdir():
        assert sha256(copied / path.name) == sha256(path)


def test_a_failed_copy_removes_its_partial_files_and_registers_nothing(tmp_path, monkeypatch):
    source, root = model_files(tmp_path / "model"), str(tmp_path / "models")
    real, calls = storage.upload_file, []

    def fail_second(src, dest, **kwargs):
        calls.append(dest)
        if len(calls) == 2:
            raise storage.StorageError(f"{dest}: quota exceeded")
        return real(src, dest, **kwargs)

    monkeypatch.setattr(storage, "upload_file", fail_second)
    registry = ModelRegistry(root)
    with pytest.raises(storage.StorageError, match="quota exceeded"):
        registry.register(str(source), {"accuracy": 0.9}, "custom", dataset_version="v-1", version="v1-fail")
    assert registry.read_index().to_json()["versions"] == {}
    assert storage.list_uris(registry.version_uri("v1-fail")) == []


def test_a_registered_version_stays_immutable(tmp_path):
    source, root = model_files(tmp_path / "model"), str(tmp_path / "models")
    registry = ModelRegistry(root)
    registry.register(str(source), {"accuracy": 0.9}, "custom", dataset_version="v-1", version="v1-kept")
    before = {p.name: sha256(p) for p in Path(registry.version_uri("v1-kept")).iterdir()}
    (source / "model.onnx").write_bytes(b"changed")
    with pytest.raises(Exception, match="already registered.*immutable"):
        registry.register(str(source), {"accuracy": 0.95}, "custom", dataset_version="v-1", version="v1-kept")
    assert {p.name: sha256(p) for p in Path(registry.version_uri("v1-kept")).iterdir()} == before


@pytest.mark.slow
def test_export_whose_registration_fails_registers_nothing_and_a_rerun_registers_once(
    cli_env, model_dir, monkeypatch, capsys
):
    real, calls = storage.upload_file, []

    def fail_in_registry(src, dest, **kwargs):
        if "registry/versions" in str(dest):
            calls.append(dest)
            if len(calls) == 2:
                raise storage.StorageError(f"{dest}: connection reset")
        return real(src, dest, **kwargs)

    monkeypatch.setattr(storage, "upload_file", fail_in_registry)
    assert cli.main(["export", "--model-dir", str(model_dir)]) == 1
    assert "connection reset. Nothing was registered" in capsys.readouterr().err
    registry = ModelRegistry.from_settings(cli_env.settings)
    assert registry.read_index().to_json()["versions"] == {}
    assert storage.list_uris(storage.join(registry.root, "registry", "versions")) == []

    assert cli.main(["export", "--model-dir", str(model_dir)]) == 0
    assert cli.main(["export", "--model-dir", str(model_dir)]) == 0  # already registered: nothing more
    [(version, record)] = registry.read_index().to_json()["versions"].items()
    copied = Path(registry.root) / record["path"]
    for path in model_dir.rglob("*"):
        if path.is_file():
            assert sha256(copied / path.relative_to(model_dir)) == sha256(path), path.name


# ---- storage: atomic writes, uploads, copies ------------------------------------------------------------------


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    return str(tmp_path / "bucket") if request.param == "local" else request.getfixturevalue("gcs_bucket")


def test_killed_mid_write_leaves_the_old_content_and_no_visible_temp_file(tmp_path):
    target = tmp_path / "bucket" / "index.json"
    storage.write_bytes(str(target), b"old")
    body = f"import storage; storage.write_bytes({str(target)!r}, b'new' * 100000)"
    assert run_killed("os.replace", 1, body, {}).returncode == -signal.SIGKILL  # data written, not yet renamed
    assert target.read_bytes() == b"old"
    assert storage.list_uris(str(target.parent)) == [str(target)]
    storage.write_bytes(str(target), b"new")
    assert target.read_bytes() == b"new"


def test_upload_failing_mid_copy_leaves_the_old_content(tmp_path, monkeypatch):
    source, dest = tmp_path / "big.bin", tmp_path / "bucket" / "big.bin"
    source.write_bytes(os.urandom(1 << 20))
    storage.upload_file(tmp_path / "big.bin", str(dest))
    old = dest.read_bytes()
    source.write_bytes(os.urandom(1 << 20))

    def half_then_fail(src, dst, **kwargs):
        Path(dst).write_bytes(Path(src).read_bytes()[: 1 << 19])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.shutil, "copyfile", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        storage.upload_file(source, str(dest))
    assert dest.read_bytes() == old and [p.name for p in dest.parent.iterdir()] == ["big.bin"]
    monkeypatch.undo()
    storage.upload_file(source, str(dest))
    assert dest.read_bytes() == source.read_bytes()


def test_copy_tree_failing_between_files_is_repaired_by_running_it_again(root, tmp_path, monkeypatch):
    source = model_files(tmp_path / "tree")
    (source / "sub").mkdir()
    (source / "sub" / "deep.bin").write_bytes(b"deep")
    real, calls = storage.upload_file, []

    def fail_third(src, dest, **kwargs):
        calls.append(dest)
        if len(calls) == 3:
            raise storage.StorageError(f"{dest}: connection reset")
        return real(src, dest, **kwargs)

    dest = storage.join(root, "copy")
    monkeypatch.setattr(storage, "upload_file", fail_third)
    with pytest.raises(storage.StorageError):
        storage.copy_tree(str(source), dest)
    monkeypatch.undo()
    written = storage.copy_tree(str(source), dest)
    expected = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    assert sorted(uri[len(dest) + 1 :] for uri in written) == expected
    assert sorted(uri[len(dest) + 1 :] for uri in storage.list_uris(dest)) == expected
    for rel in expected:
        assert storage.read_bytes(storage.join(dest, rel)) == (source / rel).read_bytes()


def test_a_reader_polling_while_the_object_is_rewritten_never_sees_partial_content(root, tmp_path):
    """One thread rewrites an object (write_bytes and upload_file in turn), another reads it all the while."""
    uri = storage.join(root, "model.onnx")
    contents = [bytes([i]) * (1 << 20) for i in range(4)]
    files = []
    for i, content in enumerate(contents):
        files.append(tmp_path / f"v{i}.bin")
        files[-1].write_bytes(content)
    storage.write_bytes(uri, contents[0])
    done, seen, bad = threading.Event(), [], []

    def read_all_the_while():
        while not done.is_set():
            data = storage.read_bytes(uri)
            seen.append(data[:1])
            if data not in contents:
                bad.append(len(data))

    reader = threading.Thread(target=read_all_the_while)
    reader.start()
    try:
        for round_ in range(12):
            i = round_ % len(contents)
            if round_ % 2:
                storage.upload_file(files[i], uri)
            else:
                storage.write_bytes(uri, contents[i])
    finally:
        done.set()
        reader.join(30)
    assert bad == [], f"the reader saw {len(bad)} partial objects (sizes {bad[:5]})"
    assert len(seen) > 12 and len(set(seen)) > 1  # it really read while the writes went on
