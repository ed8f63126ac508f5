"""Image tags by exact value: which files go into a tag (and which caches stay out), the digest's formula, the
baked file's bytes inside the trainer image, and each error's whole message (what a user reads)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from contracts.images import BAKED_TAGS, SourcesMissing, source_tag, write_baked_tags


def _write(root: Path, rel: str, content: bytes) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(content)


@pytest.fixture
def service_tree(tmp_path) -> Path:
    """The service image's sources, with every kind of cache and compiled file the tag must skip."""
    for rel in (
        "service/Dockerfile",
        "service/__init__.py",
        "service/sub/x.py",
        "contracts/__init__.py",
        "pyproject.toml",
        ".dockerignore",
        # skipped: caches by directory name anywhere below the root, compiled files by suffix
        "service/__pycache__/a.cpython-311.pyc",
        "service/.pytest_cache/v",
        "service/sub/.mypy_cache/m.json",
        "contracts/.ruff_cache/r",
        "service/old.pyo",
        "service/x.pyc",
    ):
        _write(tmp_path, rel, rel.encode() + b" body\n")
    return tmp_path


def _expected_tag(root: Path, rels: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in rels:
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return "src-" + digest.hexdigest()[:16]


def test_the_tag_is_sha256_over_each_files_path_and_bytes_in_sorted_order(service_tree):
    # sorted({dockerfile, *paths}); the Dockerfile lies inside service/, so it counts twice (its own entry last)
    files = [
        ".dockerignore",
        "contracts/__init__.py",
        "pyproject.toml",
        "service/Dockerfile",
        "service/__init__.py",
        "service/sub/x.py",
        "service/Dockerfile",
    ]
    assert source_tag("service", service_tree) == _expected_tag(service_tree, files)


def test_a_path_separator_keeps_path_and_bytes_apart(service_tree):
    before = source_tag("service", service_tree)
    (service_tree / "service" / "sub" / "x.py").rename(service_tree / "service" / "sub" / "y.py")
    assert source_tag("service", service_tree) != before


def test_unknown_image_names_the_known_ones_exactly():
    with pytest.raises(KeyError) as info:
        source_tag("notebook")
    assert info.value.args == ("unknown image 'notebook'; known: trainer, service",)


def test_missing_sources_name_each_missing_path_and_the_root(tmp_path):
    _write(tmp_path, "service/Dockerfile", b"FROM x\n")
    with pytest.raises(SourcesMissing) as info:
        source_tag("service", tmp_path)
    assert str(info.value) == (
        f"cannot compute the service image's tag: contracts, pyproject.toml, .dockerignore missing under {tmp_path}, "
        "and no image-tags.json there names it (trainer/Dockerfile bakes one into the trainer image)"
    )


def test_the_baked_file_is_sorted_indented_json_with_a_final_newline(service_tree, tmp_path_factory):
    for rel in ("trainer/Dockerfile", "trainer/__init__.py", "storage/__init__.py", "settings/__init__.py"):
        _write(service_tree, rel, b"x\n")
    (service_tree / "config").mkdir()
    out = tmp_path_factory.mktemp("app") / BAKED_TAGS
    tags = write_baked_tags(out, service_tree)
    assert list(tags) == ["trainer", "service"]
    assert out.read_text() == (
        "{\n"
        f'  "service": "{source_tag("service", service_tree)}",\n'
        f'  "trainer": "{source_tag("trainer", service_tree)}"\n'
        "}\n"
    )


def test_a_baked_file_that_is_not_json_says_so_and_asks_for_a_rebuild(tmp_path):
    (tmp_path / BAKED_TAGS).write_text("not json")
    with pytest.raises(SourcesMissing) as info:
        source_tag("trainer", tmp_path)
    assert str(info.value) == (
        f"{tmp_path / BAKED_TAGS} is not JSON (Expecting value: line 1 column 1 (char 0)): rebuild the image"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("content", ['{"trainer": "latest"}', '{"trainer": 3}', '["src-1"]', '"src-1"'])
def test_a_baked_file_must_map_names_to_src_tags(tmp_path, content):
    (tmp_path / BAKED_TAGS).write_text(content)
    with pytest.raises(SourcesMissing) as info:
        source_tag("trainer", tmp_path)
    assert str(info.value) == f"{tmp_path / BAKED_TAGS} must map image names to src-<hex> tags: rebuild the image"


def test_a_baked_tag_is_returned_as_written(tmp_path):
    (tmp_path / BAKED_TAGS).write_text(json.dumps({"trainer": "src-0123456789abcdef"}))
    assert source_tag("trainer", tmp_path) == "src-0123456789abcdef"
    with pytest.raises(SourcesMissing, match=re.escape("no image-tags.json there names it")):
        source_tag("service", tmp_path)
