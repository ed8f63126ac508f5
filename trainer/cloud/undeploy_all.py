"""`python -m trainer undeploy-all`: take every model off the Vertex AI endpoint, before `cdktf destroy`.

Why the SDK: the models were deployed by the SDK (`deploy-model`), which Terraform cannot see, and an endpoint
with deployed models cannot be deleted.
"""

from __future__ import annotations

import sys

from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError


def undeploy_all(settings, aiplatform=None) -> str:
    if aiplatform is None:
        from google.cloud import aiplatform
    from google.api_core import exceptions

    aiplatform.init(project=settings.project_id, location=settings.region)
    name = settings.names.endpoint_name
    try:  # Endpoint(name) reads nothing yet (the SDK defers the GET): list_models is the first read
        endpoint = aiplatform.Endpoint(name)
        count = len(endpoint.list_models())
    except exceptions.NotFound:
        return f"endpoint {name} does not exist: nothing to undeploy"
    endpoint.undeploy_all(sync=True)
    return f"undeployed {count} model(s) from {name}"


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args, settings) -> int:
    require_gcp(settings, "undeploy-all")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(
                "undeploy-all removes every model from the endpoint; pass --yes to confirm "
                "when running without a terminal"
            )
        answer = input(f"undeploy every model from {settings.names.endpoint_name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing undeployed")
            return 1
    print(undeploy_all(settings))
    return 0
