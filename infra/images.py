"""Content-hash tags for the trainer and service images: the tag changes exactly when an image's sources do.

Why a content hash, not a git sha: a commit that touches only docs must not rebuild or redeploy anything, and
the tag must be computable without git (Cloud Build sources, `cdktf synth` on a tarball). The stack builds and
pushes `<repository>/<image>:<tag>` and pins Cloud Run to the pushed digest (infra/components/images.py).

`python -m infra.images [--env ENV]` prints `<image> <reference>` lines, e.g. for a pipeline to pre-pull.
"""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class ImageSource:
    """What goes into one image: its Dockerfile (relative to the build context, the repository root) and the
    paths its build copies."""
    dockerfile: str
    paths: tuple[str, ...]


IMAGE_SOURCES = {
    "trainer": ImageSource("trainer/Dockerfile", ("trainer", "config", "pyproject.toml", ".dockerignore")),
    "service": ImageSource("service/Dockerfile", ("service", "pyproject.toml", ".dockerignore")),
}


def _files(root: Path, rel: str):
    path = root / rel
    if path.is_file():
        yield path
    elif path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and not (_SKIPPED_PARTS & set(child.relative_to(root).parts)) \
                    and child.suffix not in _SKIPPED_SUFFIXES:
                yield child


def source_tag(image: str, root: Path = REPO_ROOT) -> str:
    """`src-<16 hex>`: sha256 over the relative path and bytes of every file the image is built from."""
    if image not in IMAGE_SOURCES:
        raise KeyError(f"unknown image {image!r}; known: {', '.join(IMAGE_SOURCES)}")
    source = IMAGE_SOURCES[image]
    digest = hashlib.sha256()
    for rel in sorted({source.dockerfile, *source.paths}):
        for path in _files(root, rel):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "src-" + digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    from infra.naming import Names
    from trainer.config import load_config

    parser = argparse.ArgumentParser(prog="python -m infra.images", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dev", help="environment whose Artifact Registry repository to name")
    args = parser.parse_args(argv)
    names = Names(load_config(args.env))
    for image in IMAGE_SOURCES:
        print(image, f"{names.image_repository(image)}:{source_tag(image)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
