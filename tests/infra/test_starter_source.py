"""The pipeline starter's source archive (infra/components/starter_source.py), read back as Cloud Run functions
reads it: exactly which files it holds and under which names, byte-for-byte the same on every build (its hash names
the uploaded object: a build time or a file mode from the checkout would redeploy the function on every apply), and
the refusal of a tree that lacks a file the function imports."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from infra.components.starter_source import REPO, archive_bytes, archive_files, write_archive


def _tree(root: Path) -> Path:
    """A repository of its own: the files the archive takes, and a contracts module it must leave out."""
    (root / "starter").mkdir(parents=True)
    for name in ("main.py", "requirements.txt", "events.py", "logic.py"):
        (root / "starter" / name).write_text(f"# {name}\n")
    (root / "contracts").mkdir()
    (root / "contracts" / "__init__.py").write_text("")
    (root / "contracts" / "starter.py").write_text("STARTER = 1\n")
    (root / "contracts" / "serving.py").write_text("# not the starter's\n")
    return root


def test_the_archive_holds_main_at_the_root_the_starter_package_and_its_one_contracts_module():
    files = archive_files()
    starter = sorted(p.name for p in (REPO / "starter").glob("*.py"))
    assert files == {
        "main.py": REPO / "starter" / "main.py",
        "requirements.txt": REPO / "starter" / "requirements.txt",
        **{f"starter/{name}": REPO / "starter" / name for name in starter},
        "contracts/__init__.py": REPO / "contracts" / "__init__.py",
        "contracts/starter.py": REPO / "contracts" / "starter.py",
    }
    assert "starter/main.py" in files and "starter/vertex.py" in files  # main.py twice: at the root and in the package


def test_the_archive_is_the_same_bytes_on_every_build_with_no_date_and_plain_file_modes(tmp_path):
    repo = _tree(tmp_path / "repo")
    data = archive_bytes(repo)
    (repo / "starter" / "logic.py").chmod(0o755)  # an executable bit and a newer time in the checkout: same bytes
    os.utime(repo / "starter" / "logic.py", (2_000_000_000, 2_000_000_000))
    assert archive_bytes(repo) == data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [
            "contracts/__init__.py",
            "contracts/starter.py",
            "main.py",
            "requirements.txt",
            "starter/events.py",
            "starter/logic.py",
            "starter/main.py",
        ]
        assert {(i.date_time, i.external_attr, i.compress_type) for i in infos} == {
            ((1980, 1, 1, 0, 0, 0), 0o644 << 16, zipfile.ZIP_DEFLATED)
        }
        assert archive.read("main.py") == b"# main.py\n"
        assert archive.read("starter/main.py") == b"# main.py\n"
        assert archive.read("requirements.txt") == b"# requirements.txt\n"
        assert archive.read("contracts/starter.py") == b"STARTER = 1\n"


def test_the_archive_is_written_under_its_hash_into_a_new_or_existing_directory(tmp_path):
    repo = _tree(tmp_path / "repo")
    data = archive_bytes(repo)
    directory = tmp_path / "out" / "nested"
    path = write_archive(directory, repo)
    assert path == directory / f"starter-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    assert len(path.name) == len("starter-") + 16 + len(".zip")
    assert path.read_bytes() == data
    assert write_archive(directory, repo) == path  # a second build into the same directory: the same object
    (repo / "contracts" / "starter.py").write_text("STARTER = 2\n")
    assert write_archive(directory, repo) != path  # changed code: a new object name, so the function redeploys
    assert sorted(p.name for p in directory.iterdir()) == sorted([path.name, write_archive(directory, repo).name])


def test_a_tree_without_a_file_the_function_imports_is_refused_naming_each_missing_file(tmp_path):
    repo = _tree(tmp_path / "repo")
    (repo / "contracts" / "starter.py").unlink()
    (repo / "starter" / "requirements.txt").unlink()
    with pytest.raises(FileNotFoundError) as refused:
        archive_files(repo)
    assert str(refused.value) == (
        f"the starter's archive needs {repo / 'starter' / 'requirements.txt'}, {repo / 'contracts' / 'starter.py'}"
    )
    shutil.rmtree(repo / "contracts")
    with pytest.raises(FileNotFoundError, match="contracts/__init__.py"):
        archive_bytes(repo)
