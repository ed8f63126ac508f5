"""Content-hash image tags: stable for the same sources, new for any change, blind to caches, and an error (not
a guess such as ':latest') where the sources are absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from contracts.images import BAKED_TAGS, IMAGE_SOURCES, SourcesMissing, source_tag, write_baked_tags
from infra.images import main as images_main
from settings import load_config


@pytest.fixture
def tree(tmp_path) -> Path:
    for _image, source in IMAGE_SOURCES.items():
        for rel in source.paths:
            if "." not in rel:
                (tmp_path / rel).mkdir(exist_ok=True)
                (tmp_path / rel / "__init__.py").write_text(f"# {rel}\n")
        (tmp_path / source.dockerfile).write_text("FROM python:3.11-slim\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / ".dockerignore").write_text(".git\n")
    return tmp_path


def test_tag_is_stable_and_shaped(tree):
    tag = source_tag("service", tree)
    assert tag == source_tag("service", tree)
    assert tag.startswith("src-") and len(tag) == 20


def test_any_source_change_changes_only_the_images_built_from_it(tree):
    before = {i: source_tag(i, tree) for i in IMAGE_SOURCES}
    (tree / "trainer" / "cli.py").write_text("x = 1\n")
    assert source_tag("trainer", tree) != before["trainer"]
    assert source_tag("service", tree) == before["service"]
    # The trainer image bakes the service image's tag (the image it deploys): a service change is a trainer change.
    before = {i: source_tag(i, tree) for i in IMAGE_SOURCES}
    (tree / "service" / "app.py").write_text("x = 1\n")
    assert source_tag("service", tree) != before["service"]
    assert source_tag("trainer", tree) != before["trainer"]
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
    assert lines["service"] == (
        f"europe-west4-docker.pkg.dev/fmnist-mlops-dev/fmnist-mlops-dev-images/service:{source_tag('service')}"
    )


def test_contracts_change_both_images(tree):
    before = {i: source_tag(i, tree) for i in IMAGE_SOURCES}
    (tree / "contracts" / "layout.py").write_text("X = 1\n")
    assert all(source_tag(i, tree) != before[i] for i in IMAGE_SOURCES)


def test_missing_sources_are_an_error_not_a_tag(tree):
    (tree / ".dockerignore").unlink()
    with pytest.raises(SourcesMissing, match=r"\.dockerignore missing"):
        source_tag("trainer", tree)


def test_image_uri_without_sources_asks_for_the_config_key(monkeypatch):
    names = load_config("dev").names
    monkeypatch.setattr("contracts.images.REPO_ROOT", Path("/nonexistent"))
    with pytest.raises(ValueError, match=r"set vertex\.trainer_image"):
        names.image_uri("trainer")
    explicit = load_config("dev", environ={"FMNIST_VERTEX__TRAINER_IMAGE": "r/trainer@sha256:abc"}).names
    assert explicit.image_uri("trainer") == "r/trainer@sha256:abc"


def test_without_sources_the_baked_tags_name_the_images(tree, tmp_path_factory):
    """What the trainer image holds: its packages and image-tags.json, no Dockerfiles, no service/."""
    expected = {i: source_tag(i, tree) for i in IMAGE_SOURCES}
    image_root = tmp_path_factory.mktemp("app")
    for rel in ("trainer", "contracts", "settings", "config"):
        shutil.copytree(tree / rel, image_root / rel)
    (image_root / "trainer" / "Dockerfile").unlink()
    with pytest.raises(SourcesMissing, match=r"no image-tags\.json there names it"):
        source_tag("service", image_root)
    assert write_baked_tags(image_root / BAKED_TAGS, tree) == expected
    assert {i: source_tag(i, image_root) for i in IMAGE_SOURCES} == expected


def test_sources_win_over_a_baked_file(tree):
    (tree / BAKED_TAGS).write_text('{"trainer": "src-0000000000000000", "service": "src-0000000000000000"}')
    assert source_tag("trainer", tree) != "src-0000000000000000"


@pytest.mark.parametrize("content", ["not json", '{"trainer": 3}', '["src-1"]'])
def test_a_damaged_baked_file_is_an_error_that_says_rebuild(tmp_path, content):
    (tmp_path / BAKED_TAGS).write_text(content)
    with pytest.raises(SourcesMissing, match="rebuild the image"):
        source_tag("trainer", tmp_path)
