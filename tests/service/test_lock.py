"""The service image installs from service/requirements.lock: it must satisfy pyproject.toml and pin every wheel.

Why uv: it resolves for the image's platform and Python (x86_64 manylinux, 3.11) whatever machine runs it, writes
hashes for every wheel, and takes under a second; pip-tools resolves for the machine it runs on. Offline check:
a lock is stale when a direct requirement of the `service` group (or the project's base dependencies) changed so
that the pinned version no longer satisfies it, or was added and is not pinned at all.
"""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "service" / "requirements.lock"
COMMAND = (
    "uv pip compile pyproject.toml --extra service --generate-hashes --python-version 3.11 "
    "--python-platform x86_64-manylinux_2_28 -o service/requirements.lock"
)


def pinned() -> dict[str, str]:
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", LOCK.read_text(), re.M)
    }


def test_every_direct_requirement_is_pinned_at_a_version_it_allows():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["service"]]
    pins = pinned()
    stale = {
        str(req): pins.get(canonicalize_name(req.name), "not pinned")
        for req in wanted
        if not req.specifier.contains(pins.get(canonicalize_name(req.name), "0.0.0.dev0"), prereleases=True)
        or canonicalize_name(req.name) not in pins
    }
    assert stale == {}, f"service/requirements.lock is stale: regenerate it with `{COMMAND}`"


def test_every_pin_carries_a_hash_and_the_lock_says_how_to_regenerate_it():
    text = LOCK.read_text()
    assert COMMAND in text
    entries = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 2)[2])
    assert len(entries) == len(pinned()) >= 10
    assert all("--hash=sha256:" in entry for entry in entries)
    assert not {"tensorflow", "tensorflow-cpu", "keras", "pydantic", "pyyaml"} & set(pinned())


def test_the_build_backend_lock_satisfies_the_build_system_and_carries_hashes():
    """service/Dockerfile builds the project wheel with service/build-requirements.lock: a venv's own setuptools
    is older than the build-system's and has no bdist_wheel (the image once failed to build that way)."""
    text = (REPO / "service" / "build-requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M))
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    for req in map(Requirement, required):
        assert req.specifier.contains(pins.get(req.name, "0.0.0.dev0")), f"{req} not pinned in the build lock"
    assert text.count("--hash=sha256:") >= len(pins) >= 1
