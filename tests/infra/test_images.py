"""Content-hash image tags: stable for the same sources, new for any change, blind to caches."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.images import IMAGE_SOURCES, main as images_main, source_tag


@pytest.fixture
def tree(tmp_path) -> Path:
    for image, source in IMAGE_SOURCES.items():
        (tmp_path / image).mkdir()
        (tmp_path / image / "__init__.py").write_text(f"# {image}\n")
        (tmp_path / source.dockerfile).write_text("FROM python:3.11-slim\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return tmp_path


def test_tag_is_stable_and_shaped(tree):
    tag = source_tag("service", tree)
    assert tag == source_tag("service", tree)
    assert tag.startswith("src-") and len(tag) == 20


def test_any_source_change_changes_only_that_image(tree):
    before = {i: source_tag(i, tree) for i in IMAGE_SOURCES}
    (tree / "service" / "app.py").write_text("x = 1\n")
    assert source_tag("service", tree) != before["service"]
    assert source_tag("trainer", tree) == before["trainer"]
    (tree / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert source_tag("trainer", tree) != before["trainer"]


def test_caches_and_unrelated_files_do_not_change_the_tag(tree):
    before = source_tag("trainer", tree)
    (tree / "trainer" / "__pycache__").mkdir()
    (tree / "trainer" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tree / "README.md").write_text("docs\n")
    shutil.copytree(tree / "service", tree / "service_copy")
    assert source_tag("trainer", tree) == before


def test_unknown_image_is_an_error():
    with pytest.raises(KeyError, match="known: trainer, service"):
        source_tag("notebook")


def test_cli_prints_full_references(capsys):
    assert images_main(["--env", "dev"]) == 0
    lines = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["service"] == (f"europe-west4-docker.pkg.dev/fmnist-mlops-dev/fmnist-mlops-dev-images/service:"
                                f"{source_tag('service')}")
