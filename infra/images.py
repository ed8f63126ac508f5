"""`python -m infra.images [--env ENV]`: print `<image> <reference>` lines of the images `cdktf deploy` pushes.

The tags are content hashes of each image's sources (contracts.images), so a pipeline can pre-pull exactly the
images a deploy of this checkout would push.
"""

from __future__ import annotations

import argparse

from contracts.images import IMAGE_SOURCES, source_tag

__all__ = ["IMAGE_SOURCES", "main", "source_tag"]


def main(argv: list[str] | None = None) -> int:
    from infra.naming import Names
    from settings import load_config

    parser = argparse.ArgumentParser(prog="python -m infra.images", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env", default="dev", help="environment whose Artifact Registry repository to name")
    args = parser.parse_args(argv)
    names = Names.of(load_config(args.env))
    for image in IMAGE_SOURCES:
        print(image, f"{names.image_repository(image)}:{source_tag(image)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
