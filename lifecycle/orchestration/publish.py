"""`python -m lifecycle publish --env ENV --tag COMMIT`: upload the compiled templates to the KFP repository.

Why: the starter workflow starts every run from `<repository>/fmnist-lifecycle/latest` (contracts.cloud
pipeline_template_uri); until a template is uploaded there, every trigger's create answers 404. Cloud Build's deploy
pipeline compiles both pipelines (`make pipeline`) and runs this after `cdktf deploy` (which creates the
repository): each template goes up once with two tags, `latest` (what runs start from) and the commit (what a run
can be traced back to). kfp's RegistryClient does the upload (a multipart POST to the repository's
`https://<region>-kfp.pkg.dev/<project>/<repository>` with Application Default Credentials); it lives in the kfp
venv, like `compile`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from settings import ConfigError, load_config

TEMPLATES = (Path("build") / "fmnist-lifecycle.yaml", Path("build") / "fmnist-batch-prediction.yaml")  # `make pipeline`
LATEST = "latest"


def registry_host(names: Any) -> str:
    """The KFP Artifact Registry repository infra/ declares, as kfp's RegistryClient host."""
    return f"https://{names.region}-kfp.pkg.dev/{names.project}/{names.pipeline_repository}"


def publish(names: Any, templates: list[Path], tag: str, auth: Any = None) -> list[tuple[str, str]]:
    """Upload each template with the tags `latest` and `tag`; returns kfp's (package, version) per template."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", tag) or tag == LATEST:
        raise ValueError(f"--tag {tag!r}: give the commit (letters, digits, '.', '_', '-'), not 'latest'")
    missing = [str(t) for t in templates if not t.is_file()]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing: compile them first with `make pipeline ENV={names.env}`")
    from kfp.registry import RegistryClient

    client = RegistryClient(host=registry_host(names), auth=auth)
    return [client.upload_pipeline(file_name=str(template), tags=[LATEST, tag]) for template in templates]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle publish", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env", required=True, help="the gcp environment whose KFP repository receives them")
    parser.add_argument("--tag", required=True, help="the commit the templates were compiled from")
    parser.add_argument("templates", nargs="*", type=Path, default=list(TEMPLATES), help="default: both of build/")
    args = parser.parse_args(argv)
    try:
        settings = load_config(args.env)
        if settings.target != "gcp":
            raise ValueError(f"--env {args.env} is a {settings.target} environment: templates go to a gcp one")
        uploaded = publish(settings.names, args.templates, args.tag)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for template, (package, version) in zip(args.templates, uploaded, strict=True):
        print(f"published {template} as {registry_host(settings.names)}/{package} {version} ({LATEST}, {args.tag})")
    return 0
