"""The Dockerfiles' promises that a build here cannot show: the public bases stay the defaults Cloud Build pulls
(the Debian stand-ins of `make images` are passed as build arguments, never committed), both bases are pinned
by digest, and the per-build code version comes after every expensive layer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASES = {"service/Dockerfile": "PYTHON_BASE", "trainer/Dockerfile": "TF_BASE"}


def lines(dockerfile: str) -> list[str]:
    return (REPO / dockerfile).read_text().replace("\\\n", " ").splitlines()


@pytest.mark.parametrize(("dockerfile", "arg"), BASES.items())
def test_every_stage_starts_from_the_public_base_named_by_a_build_argument(dockerfile, arg):
    text = lines(dockerfile)
    first_from = next(i for i, line in enumerate(text) if line.startswith("FROM "))
    defaults = [line.split("=", 1)[1] for line in text[:first_from] if line.startswith(f"ARG {arg}=")]
    assert len(defaults) == 1 and defaults[0].startswith("docker.io/"), defaults
    assert all(line.split()[1] == f"${{{arg}}}" for line in text if line.startswith("FROM ")), dockerfile


def test_the_service_base_is_pinned_by_digest():
    default = next(line for line in lines("service/Dockerfile") if line.startswith("ARG PYTHON_BASE="))
    assert re.fullmatch(r"ARG PYTHON_BASE=docker\.io/library/python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", default)


def test_the_trainer_base_is_pinned_by_digest_and_its_tag_names_the_trainers_tensorflow():
    default = next(line for line in lines("trainer/Dockerfile") if line.startswith("ARG TF_BASE="))
    match = re.fullmatch(r"ARG TF_BASE=docker\.io/tensorflow/tensorflow:([0-9.]+)@sha256:[0-9a-f]{64}", default)
    assert match, default
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"tensorflow-cpu=={match.group(1)}"' in pyproject  # the stand-in base installs the same version


@pytest.mark.parametrize("dockerfile", BASES)
def test_the_code_version_comes_after_every_run_step(dockerfile):
    """CODE_VERSION changes with every source change: any layer after it is rebuilt (pip included, if it stood
    above the dependency install)."""
    text = lines(dockerfile)
    version = next(i for i, line in enumerate(text) if line.startswith("ARG CODE_VERSION"))
    assert not any(line.startswith("RUN ") for line in text[version:]), dockerfile


def test_the_build_context_leaves_out_local_state():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".containers", ".mlops", ".venv", "image-tags.json", ".git"} <= ignored
