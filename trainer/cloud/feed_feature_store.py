"""`python -m trainer feed-feature-store`: the feature table into BigQuery and the online store, on the gcp target.

Why a load job and a sync: the Vertex AI Feature Online Store serves from a feature view over the BigQuery table
infra/ declares; the table must hold one row per image id of the current dataset version, so a load job replaces
its contents (WRITE_TRUNCATE) from the Parquet file `trainer features` wrote, with the schema from the one
feature schema (contracts.feature_schema), and a sync copies it to the online store now instead of at the next
nightly cron. The requests are built by pure functions here (tests assert them, `--dry-run` prints them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import storage
from contracts import feature_schema
from contracts.layout import FEATURES_FILE
from trainer.cloud import endpoints
from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError


@dataclass
class FeatureStoreRequests:
    """Arguments of bigquery.Client.load_table_from_uri (job_config as LoadJobConfig's properties) and of
    FeatureOnlineStoreAdminServiceClient.sync_feature_view."""

    project: str
    location: str
    source_uri: str
    destination: str
    job_config: dict
    sync_feature_view: dict
    api_endpoint: str


def build_requests(settings, dataset_version: str) -> FeatureStoreRequests:
    from trainer.data.dataset import version_uri

    source = storage.join(version_uri(settings, dataset_version), FEATURES_FILE)
    if not storage.is_gcs(source):
        raise CommandError(
            f"the features are at {source}, not on GCS: BigQuery loads from gs:// only (use a gcp env, --env dev)"
        )
    names = settings.names
    return FeatureStoreRequests(
        project=settings.project_id,
        location=settings.region,
        source_uri=source,
        destination=f"{settings.project_id}.{names.bigquery_dataset}.{names.feature_table}",
        job_config={
            "source_format": "PARQUET",
            "write_disposition": "WRITE_TRUNCATE",  # one row per image id of this version, never two versions
            "schema": feature_schema.bigquery_schema(),
            "destination_encryption_configuration": {"kmsKeyName": names.kms_key_name},
            "labels": {"app": "fmnist-mlops", "env": settings.env, "dataset_version": dataset_version},
        },
        sync_feature_view={"feature_view": names.feature_view_name},
        api_endpoint=names.aiplatform_endpoint,
    )


def load_job_config(request: FeatureStoreRequests, bigquery):
    """The request's job config as the SDK's LoadJobConfig (built offline; tests bind it to the SDK)."""
    config = request.job_config
    return bigquery.LoadJobConfig(
        source_format=getattr(bigquery.SourceFormat, config["source_format"]),
        write_disposition=getattr(bigquery.WriteDisposition, config["write_disposition"]),
        schema=[
            bigquery.SchemaField(f["name"], f["type"], mode=f["mode"], description=f["description"])
            for f in config["schema"]
        ],
        destination_encryption_configuration=bigquery.EncryptionConfiguration(
            kms_key_name=config["destination_encryption_configuration"]["kmsKeyName"]
        ),
        labels=config["labels"],
    )


def sync_request(request: FeatureStoreRequests, aiplatform_v1):
    return aiplatform_v1.SyncFeatureViewRequest(**request.sync_feature_view)


def send(request: FeatureStoreRequests, bigquery=None, aiplatform_v1=None) -> tuple[int, str]:
    """Run the load job to completion, then start the sync; returns (rows loaded, sync operation name)."""
    if bigquery is None:
        from google.cloud import bigquery
    if aiplatform_v1 is None:
        from google.cloud import aiplatform_v1
    client = bigquery.Client(project=request.project, location=request.location)
    job = client.load_table_from_uri(
        request.source_uri, request.destination, job_config=load_job_config(request, bigquery)
    )
    job.result()
    admin = aiplatform_v1.FeatureOnlineStoreAdminServiceClient(**endpoints.gapic_client_kwargs(request.api_endpoint))
    response = admin.sync_feature_view(request=sync_request(request, aiplatform_v1))
    return int(job.output_rows or 0), response.feature_view_sync


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--version", help="dataset version (default: LATEST in the datasets bucket)")
    parser.add_argument("--dry-run", action="store_true", help="print the requests, send nothing")


def run(args, settings) -> int:
    from trainer.data.dataset import resolve_version

    version = resolve_version(settings, args.version)
    request = build_requests(settings, version)
    if args.dry_run:
        print(json.dumps(request.__dict__, indent=2))
        return 0
    require_gcp(settings, "feed-feature-store")
    rows, sync = send(request)
    print(f"loaded {rows:,} rows of {version} into {request.destination}; feature view sync {sync} started")
    return 0
