"""A Vertex AI batch prediction job on the serving image: the request, built by pure functions, and `send`.

Why the serving image: batch and online predictions must come from the same code; the job starts the service's
container (the version deploy-model uploaded) and posts the instances to its /predict route. A gs:// prefix of
PNGs goes as `file-list` (Vertex AI sends each file base64-encoded as {"b64": ...}, the instance shape the service
accepts); a gs:// .jsonl of instances goes as `jsonl`. Predictions land as JSONL under the dev bucket.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import storage
from trainer.cloud import gcp_resources
from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError

BATCH_SIZE = 64  # instances per request: the service's measured sweet spot for 64-image requests


@dataclass
class BatchPredictionRequest:
    """aiplatform.init kwargs, BatchPredictionJob.create kwargs, and the file list to write first (or None)."""

    init: dict
    create: dict
    file_list: tuple[str, str] | None  # (gs:// URI, newline-separated PNG URIs)
    wait: bool = False  # block until the job ends (after publishing it as gcp_resources)


def job_name(version: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"fmnist-batch-{re.sub(r'[^a-z0-9-]', '-', version.lower())}-{now:%Y%m%d-%H%M%S}"


def build_batch_prediction(
    settings,
    version: str,
    source: str,
    png_uris: list[str] | None,
    *,
    display_name: str,
    destination: str | None,
    wait: bool = False,
) -> BatchPredictionRequest:
    """`png_uris`: the PNG objects under a prefix source (file-list); None for a .jsonl source (jsonl)."""
    if not storage.is_gcs(source):
        raise CommandError(f"{source}: a Vertex AI batch prediction reads from gs:// only")
    names, vertex = settings.names, settings.vertex
    output = destination or storage.join(names.batch_predictions_uri, display_name)
    if png_uris is not None:
        if not png_uris:
            raise CommandError(f"{source}: no .png objects under this prefix")
        file_list = (storage.join(output, "inputs.txt"), "".join(u + "\n" for u in png_uris))
        instances_format, gcs_source = "file-list", file_list[0]
    elif source.endswith(".jsonl"):
        file_list, instances_format, gcs_source = None, "jsonl", source
    else:
        raise CommandError(
            f"{source}: give a gs:// prefix of PNGs or a .jsonl of instances (for an IDX file, export PNGs first "
            "with `python -m trainer export-images`, or score it locally without --vertex)"
        )
    return BatchPredictionRequest(
        init={"project": settings.project_id, "location": settings.region},
        create={
            "job_display_name": display_name,
            "model_name": f"{names.parent_model_name}@{version}",
            "instances_format": instances_format,
            "predictions_format": "jsonl",
            "gcs_source": gcs_source,
            "gcs_destination_prefix": output,
            "machine_type": vertex.serving_machine_type,
            "starting_replica_count": 1,
            "max_replica_count": vertex.max_replica_count,
            "batch_size": BATCH_SIZE,
            "service_account": names.runtime_account("service"),
            "encryption_spec_key_name": names.kms_key_name,
            "labels": {"app": "fmnist-mlops", "env": settings.env, "component": "batch-prediction"},
            "sync": False,  # create() returns once the job exists: it is published before any wait
        },
        file_list=file_list,
        wait=wait,
    )


def build_for_source(
    settings, source: str, ref: str, destination: str | None, *, display_name: str | None = None, wait: bool = False
) -> BatchPredictionRequest:
    """Resolve `ref` in the registry and list the PNGs of a prefix source (reads the buckets, sends nothing)."""
    from trainer.models.registry import ModelRegistry

    version = ModelRegistry.from_settings(settings).resolve(ref)
    png_uris = None
    if storage.is_gcs(source) and not source.endswith(".jsonl"):
        png_uris = sorted(u for u in storage.list_uris(source.rstrip("/") + "/") if u.lower().endswith(".png"))
    destination = destination if destination and storage.is_gcs(destination) else None
    return build_batch_prediction(
        settings,
        version,
        source,
        png_uris,
        display_name=display_name or job_name(version),
        destination=destination,
        wait=wait,
    )


def send(settings, request: BatchPredictionRequest, aiplatform=None):
    require_gcp(settings, "batch prediction on Vertex AI")
    if aiplatform is None:
        from google.cloud import aiplatform
    if request.file_list:
        storage.write_text(*request.file_list)
    aiplatform.init(**request.init)
    job = aiplatform.BatchPredictionJob.create(**request.create)
    job.wait_for_resource_creation()
    gcp_resources.publish("BatchPredictionJob", request.init["location"], job)
    if request.wait:
        try:
            with gcp_resources.cancel_on_sigterm(job, "Vertex AI batch prediction job"):
                job.wait_for_completion()
        except RuntimeError as exc:
            raise CommandError(
                f"Vertex AI batch prediction job {job.resource_name} did not succeed: {exc}. "
                "Its logs are in the Vertex AI console (Batch predictions)"
            ) from None
    return job


# ---- command line (the prediction pipeline's step) ---------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("source", help="a gs:// prefix of PNGs or a gs:// .jsonl of instances")
    parser.add_argument("--model", default="champion", help="registry version id or alias (default: champion)")
    parser.add_argument("--destination", help="gs:// prefix for the predictions (default: dev bucket)")
    parser.add_argument("--display-name", help="job name (default fmnist-batch-<version>-<UTC time>)")
    parser.add_argument("--wait", action="store_true", help="block until the job ends (fails if the job fails)")
    parser.add_argument("--dry-run", action="store_true", help="print the request, send nothing")


def run(args, settings) -> int:
    if args.display_name and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", args.display_name):
        raise CommandError(f"--display-name '{args.display_name}': use lowercase letters, digits and '-'")
    request = build_for_source(
        settings, args.source, args.model, args.destination, display_name=args.display_name, wait=args.wait
    )
    if args.dry_run:
        print(json.dumps(request.__dict__, indent=2))
        return 0
    job = send(settings, request)
    print(f"Vertex AI batch prediction job {job.resource_name} writes to {request.create['gcs_destination_prefix']}")
    return 0
