"""Content-hash tags for the trainer and service images: the tag changes exactly when an image's sources do.

Why a content hash, not a git sha: a commit that touches only docs must not rebuild or redeploy anything, and
the tag must be computable without git (Cloud Build sources, `cdktf synth` on a tarball). infra/ builds and
pushes `<repository>/<image>:<tag>`; the trainer's adapters reference the same tag (contracts.cloud).

Inside the trainer image the sources are absent (no Dockerfiles, no service/): trainer/Dockerfile computes both
tags while it builds, from the files it is built from, and bakes them into `image-tags.json` beside the packages;
`source_tag` reads that file where the sources are missing. Because the trainer image thereby names the service
image it deploys, the service's sources are part of the trainer's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
BAKED_TAGS = "image-tags.json"  # relative to the repository root (/app in the trainer image)


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
        ("trainer", "storage", "contracts", "settings", "config", "pyproject.toml", ".dockerignore", "service"),
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
        baked = _baked_tags(root)
        if image in baked:
            return baked[image]
        raise SourcesMissing(
            f"cannot compute the {image} image's tag: {', '.join(missing)} missing under {root}, "
            f"and no {BAKED_TAGS} there names it (trainer/Dockerfile bakes one into the trainer image)"
        )
    digest = hashlib.sha256()
    for rel in sorted({source.dockerfile, *source.paths}):
        for path in _files(root, rel):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "src-" + digest.hexdigest()[:16]


def _baked_tags(root: Path) -> dict[str, str]:
    path = root / BAKED_TAGS
    if not path.is_file():
        return {}
    try:
        tags = json.loads(path.read_text())
    except ValueError as exc:
        raise SourcesMissing(f"{path} is not JSON ({exc}): rebuild the image") from None
    if not isinstance(tags, dict) or not all(isinstance(v, str) and v.startswith("src-") for v in tags.values()):
        raise SourcesMissing(f"{path} must map image names to src-<hex> tags: rebuild the image")
    return {str(k): v for k, v in tags.items()}


def write_baked_tags(path: Path, root: Path | None = None) -> dict[str, str]:
    """Compute every image's tag from the sources under `root` and write them to `path` (trainer/Dockerfile)."""
    tags = {image: source_tag(image, root) for image in IMAGE_SOURCES}
    path.write_text(json.dumps(tags, indent=2, sort_keys=True) + "\n")
    return tags
