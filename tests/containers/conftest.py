"""Fixtures for the container contract tests: the images of this checkout, run with the project's podman.

Why real containers: the cloud runs the images, not the development venv; a Dockerfile that cannot build, a file
the image lacks or a directory its user cannot write shows only here. The images are looked up by their content
tag (contracts/images.py), so a test never runs an image of other sources. Without podman or the images the tests
skip, saying what to run; under `make test-images` (FMNIST_REQUIRE_IMAGES=1) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contracts.images import source_tag

REPO = Path(__file__).resolve().parents[2]
PODMAN = str(REPO / "scripts" / "podman.sh")
FIGURES: dict[str, str] = {}  # measured figures, printed at the end of the run


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr[-3000:]}")
    return result


def _unavailable(reason: str) -> None:
    if os.environ.get("FMNIST_REQUIRE_IMAGES") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def image_reference(image: str) -> str:
    """`localhost/fmnist-<image>:<content tag>` if `make images` built it from these sources; else skip/fail."""
    if os.geteuid() != 0:
        _unavailable("the container tests run podman as root (scripts/podman.sh): run them as root")
    if shutil.which("podman") is None:
        _unavailable("podman is not installed: run `make system-deps` as root, then `make images`")
    reference = f"localhost/fmnist-{image}:{source_tag(image)}"
    if podman("image", "exists", reference, check=False).returncode != 0:
        _unavailable(f"{reference} is not built (the {image} sources changed since, or never built): run `make images`")
    return reference


@pytest.fixture(scope="session")
def service_image() -> str:
    return image_reference("service")


@pytest.fixture(scope="session")
def trainer_image() -> str:
    return image_reference("trainer")


def world_readable(path: Path) -> Path:
    """pytest's temporary folders are root-only (0700); the images' user (uid 10001) must read or write them."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)
    return path


@dataclass
class Container:
    """A container started in the foreground by `podman run` (its exit status is the process's)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    port: int | None = None
    removed: bool = field(default=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=False)

    def stop(self) -> int:
        if self.process.poll() is None:
            podman("kill", "--signal", "TERM", self.name, check=False)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                podman("kill", "--signal", "KILL", self.name, check=False)
                self.process.wait(30)
        if not self.removed:
            podman("rm", "--force", "--ignore", self.name, check=False)
            self.removed = True
        return self.process.returncode


def run_container(
    image: str,
    log_dir: Path,
    *options: str,
    command: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Container:
    """`podman run` on the host network (the tests reach it on 127.0.0.1, it reaches fake-gcs-server there)."""
    name = f"fmnist-test-{uuid.uuid4().hex[:10]}"
    log = log_dir / f"{name}.log"
    env_args = [arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [PODMAN, "run", "--name", name, "--network", "host", *env_args, *options, image, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Container(name, process, log, time.monotonic())


@pytest.fixture
def containers(tmp_path) -> Iterator[list[Container]]:
    """Containers a test starts; each is stopped and removed afterwards, whatever the test did."""
    started: list[Container] = []
    yield started
    for container in started:
        container.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("container figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")
