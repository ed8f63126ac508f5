"""`python -m trainer deploy-model`: a registry version on the Vertex AI endpoint.

Why the SDK and not Terraform: Terraform declares the endpoint (infra/) but cannot upload or deploy a model. Each
deploy uploads the version as a new version of one parent model (version aliases = its registry aliases and its
id, so the Vertex AI Model Registry mirrors ours), with the service image as the serving container (the same
image Cloud Run runs, with the same routes, port and service settings: contracts.serving), then deploys it to the
endpoint with a traffic share.
`undeploy-all` (trainer.cloud.undeploy_all) takes them off again before `cdktf destroy`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import storage
from contracts.layout import CHAMPION
from contracts.registry_index import VersionRecord
from contracts.serving import (
    HEALTH_ROUTE,
    PORT,
    PREDICT_ROUTE,
    Env,
    deployed_model_name,
    deployed_model_version,
    service_environment,
)
from trainer.cloud.rollout import Deployed, deployed_models
from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError
from trainer.models.model_dir import verify_digests
from trainer.models.registry import ModelRegistry


@dataclass
class DeployRequest:
    """Keyword arguments of aiplatform.init, Model.upload and Model.deploy (endpoint passed by name)."""

    init: dict
    upload: dict
    deploy: dict
    endpoint: str


def vertex_environment(settings, version: str) -> dict[str, str]:
    """The deployed model's environment: the config's service settings (the same builder as Cloud Run's) and the
    version it serves; Vertex AI adds AIP_STORAGE_URI, AIP_HTTP_PORT and the routes itself."""
    environment = service_environment(
        settings.service, settings.rollout.thresholds(), env_name=settings.env, platform="vertex"
    )
    return {**environment, Env.FMNIST_MODEL_VERSION: version}


def build_deploy(
    settings,
    version: str,
    record: VersionRecord,
    aliases: list[str],
    *,
    parent_exists: bool,
    traffic_percentage: int = 100,
    machine_type: str | None = None,
) -> DeployRequest:
    """Upload as a new version of the parent model (or create it), then deploy with `traffic_percentage`."""
    if record.source != "custom":
        raise CommandError(
            f"version {version} is a {record.source} model (Vertex AI model "
            f"{record.extra.get('vertex_model', '?')}); deploy-model serves exported custom models only"
        )
    if not 0 < traffic_percentage <= 100:
        raise CommandError(f"--traffic-percentage must be 1-100, got {traffic_percentage}")
    vertex, names = settings.vertex, settings.names
    version_aliases = sorted({*aliases, version})  # our ids start with a letter: valid Vertex AI aliases
    upload = {
        "display_name": vertex.parent_model,
        "artifact_uri": storage.join(settings.models_bucket, record.path),
        "serving_container_image_uri": names.image_uri("service"),
        "serving_container_predict_route": PREDICT_ROUTE,
        "serving_container_health_route": HEALTH_ROUTE,
        "serving_container_ports": [PORT],
        "serving_container_environment_variables": vertex_environment(settings, version),
        "version_aliases": version_aliases,
        "version_description": f"registry version {version}, accuracy {record.metrics.get('accuracy')}, "
        f"dataset {record.dataset_version}",
        "is_default_version": CHAMPION in aliases,
        "labels": {"app": "fmnist-mlops", "env": settings.env, "source": record.source},
        "encryption_spec_key_name": names.kms_key_name,
        "sync": True,
    }
    upload.update({"parent_model": names.parent_model_name} if parent_exists else {"model_id": vertex.parent_model})
    deploy = {
        "deployed_model_display_name": deployed_model_name(version),
        "traffic_percentage": traffic_percentage,
        "machine_type": machine_type or vertex.serving_machine_type,
        "min_replica_count": vertex.min_replica_count,
        "max_replica_count": vertex.max_replica_count,
        "service_account": names.runtime_account("service"),
        "sync": True,
    }
    return DeployRequest(
        init={"project": settings.project_id, "location": settings.region},
        upload=upload,
        deploy=deploy,
        endpoint=names.endpoint_name,
    )


def parent_exists(aiplatform, name: str) -> bool:
    from google.api_core import exceptions

    try:
        aiplatform.Model(model_name=name)
        return True
    except exceptions.NotFound:
        return False


def retire(deployed: list[Deployed], version: str, traffic_percentage: int) -> tuple[list[str], dict[str, int]]:
    """After `version` was deployed with `traffic_percentage`: the deployed-model ids to undeploy and the traffic
    split of those that stay. At most two stay, champion and challenger: the new one, and below 100 % (a canary)
    the other model with the most traffic. Every other model (0 % after a full deploy, or a previous challenger)
    would keep its replicas billed and leave `trainer rollout` with more than two models to judge."""
    mine = [d for d in deployed if d.version == version]
    if not mine:
        raise CommandError(f"{version} is not among the endpoint's deployed models after its deploy")
    new = max(mine, key=lambda d: d.traffic)  # a retried deploy may have left a twin: the one with traffic stays
    keep, split = [new], {new.id: 100}
    others = sorted((d for d in deployed if d is not new), key=lambda d: d.traffic, reverse=True)
    if traffic_percentage < 100 and others:
        keep.append(others[0])
        split = {new.id: traffic_percentage, others[0].id: 100 - traffic_percentage}
    return [d.id for d in deployed if d not in keep], split


def uploaded_version(aiplatform, request: DeployRequest):
    """The parent model's version that an earlier (retried) deploy uploaded for this registry version, found by its
    version alias (our version id), or None: Vertex AI Pipelines may retry the step, and a second upload would
    mirror one registry version as two Vertex AI versions."""
    from google.api_core import exceptions

    parent = request.upload.get("parent_model")
    if not parent:  # no parent model yet: nothing was uploaded
        return None
    try:
        return aiplatform.Model(model_name=parent, version=request_version(request))
    except exceptions.NotFound:
        return None


def request_version(request: DeployRequest) -> str:
    return str(request.upload["serving_container_environment_variables"][Env.FMNIST_MODEL_VERSION])


def serving(endpoint) -> list[Deployed]:
    """The endpoint's deployed models as fetched when it was opened (`deployed_models` reads it again)."""
    resource = endpoint.gca_resource
    split = dict(resource.traffic_split)
    return [
        Deployed(str(m.id), deployed_model_version(m.display_name), int(split.get(str(m.id), 0)))
        for m in resource.deployed_models
    ]


def send(request: DeployRequest, aiplatform=None):
    """Upload (unless a retried deploy uploaded this version already), deploy (unless it already serves with the
    requested share), then undeploy what `retire` says no longer serves (each undeploy sets the split that stays)."""
    if aiplatform is None:
        from google.cloud import aiplatform
    aiplatform.init(**request.init)
    version, traffic = request_version(request), request.deploy["traffic_percentage"]
    model = uploaded_version(aiplatform, request)
    if model is None:
        model = aiplatform.Model.upload(**request.upload)
    else:
        print(f"note: {version} was uploaded by an earlier attempt; not uploaded again", file=sys.stderr)
    endpoint = aiplatform.Endpoint(request.endpoint)
    if any(d.version == version and d.traffic == traffic for d in serving(endpoint)):
        print(f"note: {version} already serves {traffic}% of the traffic; not deployed again", file=sys.stderr)
    else:
        model.deploy(endpoint=endpoint, **request.deploy)
    retired, split = retire(deployed_models(endpoint), version, traffic)
    for deployed_model_id in retired:
        endpoint.undeploy(deployed_model_id=deployed_model_id, traffic_split=split, sync=True)
    return model


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("ref", nargs="?", default=CHAMPION, help="registry version id or alias (default: champion)")
    parser.add_argument(
        "--traffic-percentage",
        type=int,
        default=100,
        help="share of endpoint traffic for this version (the rest keeps its proportions)",
    )
    parser.add_argument(
        "--canary",
        type=int,
        metavar="PERCENT",
        help="deploy beside the champion with this share of the traffic; end it with `python -m trainer rollout`",
    )
    parser.add_argument("--machine-type", help="default vertex.serving_machine_type")
    parser.add_argument("--dry-run", action="store_true", help="print the requests, send nothing")


def run(args, settings) -> int:
    registry = ModelRegistry.from_settings(settings)
    index = registry.read_index()
    version = registry.resolve(args.ref, index)
    aliases = index.aliases_of(version)
    record = index.versions[version]
    if record.files:  # upload exactly the bytes export verified, or nothing
        verify_digests(registry.version_uri(version), dict(record.files))
    else:
        print(f"note: {version} was registered without file digests; its files are not verified", file=sys.stderr)
    traffic = args.traffic_percentage
    if args.canary is not None:
        if CHAMPION in aliases:
            raise CommandError(
                f"{version} is the champion: a canary deploys a challenger beside it (e.g. `deploy-model candidate "
                f"--canary {args.canary}`)"
            )
        if not 0 < args.canary < 100:
            raise CommandError(f"--canary must be 1-99 (the champion keeps the rest), got {args.canary}")
        traffic = args.canary
    if args.dry_run:
        request = build_deploy(
            settings,
            version,
            record,
            aliases,
            parent_exists=True,
            traffic_percentage=traffic,
            machine_type=args.machine_type,
        )
        print(json.dumps(request.__dict__, indent=2))
        return 0
    require_gcp(settings, "deploy-model")
    from google.cloud import aiplatform

    aiplatform.init(project=settings.project_id, location=settings.region)
    request = build_deploy(
        settings,
        version,
        record,
        aliases,
        parent_exists=parent_exists(aiplatform, settings.names.parent_model_name),
        traffic_percentage=traffic,
        machine_type=args.machine_type,
    )
    model = send(request, aiplatform)
    if args.canary is not None:
        registry.record("canary-started", version, target="vertex", traffic_percentage=traffic)
    print(
        f"uploaded {version} as {model.resource_name}@{model.version_id} and deployed it to {request.endpoint} "
        f"with {traffic}% of the traffic"
    )
    return 0
