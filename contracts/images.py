"""Content-hash tags for the trainer and service images: the tag changes exactly when an image's sources do.

Why a content hash, not a git sha: a commit that touches only docs must not rebuild or redeploy anything, and
the tag must be computable without git (Cloud Build sources, `cdktf synth` on a tarball). infra/ builds and
pushes `<repository>/<image>:<tag>`; the trainer's adapters reference the same tag (contracts.cloud).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


class SourcesMissing(FileNotFoundError):
    """This installation lacks an image's sources (inside an image, say), so its tag cannot be computed."""


@dataclass(frozen=True)
class ImageSource:
    """What goes into one image: its Dockerfile (relative to the build context, the repository root) and the
    paths its build copies."""

    dockerfile: str
    paths: tuple[str, ...]


IMAGE_SOURCES = {
    "trainer": ImageSource(
        "trainer/Dockerfile",
        ("trainer", "storage", "contracts", "settings", "config", "pyproject.toml", ".dockerignore"),
    ),
    "service": ImageSource("service/Dockerfile", ("service", "contracts", "pyproject.toml", ".dockerignore")),
}


def _files(root: Path, rel: str) -> Iterator[Path]:
    path = root / rel
    if path.is_file():
        yield path
    elif path.is_dir():
        for child in sorted(path.rglob("*")):
            if (
                child.is_file()
                and not (_SKIPPED_PARTS & set(child.relative_to(root).parts))
                and child.suffix not in _SKIPPED_SUFFIXES
            ):
                yield child


def source_tag(image: str, root: Path | None = None) -> str:
    """`src-<16 hex>`: sha256 over the relative path and bytes of every file the image is built from."""
    root = REPO_ROOT if root is None else root
    if image not in IMAGE_SOURCES:
        raise KeyError(f"unknown image {image!r}; known: {', '.join(IMAGE_SOURCES)}")
    source = IMAGE_SOURCES[image]
    missing = [rel for rel in (source.dockerfile, *source.paths) if not (root / rel).exists()]
    if missing:
        raise SourcesMissing(f"cannot compute the {image} image's tag: {', '.join(missing)} missing under {root}")
    digest = hashlib.sha256()
    for rel in sorted({source.dockerfile, *source.paths}):
        for path in _files(root, rel):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "src-" + digest.hexdigest()[:16]
