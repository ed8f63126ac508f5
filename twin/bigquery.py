"""The twin's BigQuery: the JSON API the real google-cloud-bigquery client speaks, for the load job the feature
store is fed by (trainer feed-feature-store).

How the client gets here: google-cloud-bigquery reads `BIGQUERY_EMULATOR_HOST` (a base URL) itself and sends
`/bigquery/v2/...` to it; nothing in the adapter changes. What it answers: jobs.insert of a load job (a second insert
of the same job id is 409, as BigQuery answers), jobs.get (RUNNING at insert, DONE when read back, with
`statistics.load.outputRows`), and tables and datasets that infra/ declares (seeded). A load job really reads its
Parquet source from Cloud Storage (fake-gcs-server, through `storage`), counts its rows, checks that every schema field
is a column of the file and that the destination exists, then replaces (WRITE_TRUNCATE) or adds to (WRITE_APPEND)
the table's rows: a job with a wrong source, schema or table fails as BigQuery fails it, with `status.errorResult`.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from twin import wire
from twin.wire import Request, not_found


@dataclass
class FakeBigQuery:
    requests: list[Request] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # "project.dataset.table" -> table resource
    datasets: set[str] = field(default_factory=set)  # "project.dataset"
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # "project/jobId" -> job resource
    endpoint: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seed_table(self, table_id: str, schema: list[dict[str, Any]] | None = None) -> None:
        """A table infra/ declares ("project.dataset.table"), empty."""
        project, dataset, table = table_id.split(".")
        self.datasets.add(f"{project}.{dataset}")
        self.tables[table_id] = {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": schema or []},
            "numRows": "0",
        }

    def loads(self) -> list[dict[str, Any]]:
        """The load jobs received, in order (their configuration.load as sent)."""
        return [
            r.body["configuration"]["load"] for r in self.requests if r.method == "POST" and r.path.endswith("/jobs")
        ]

    def answer(self, request: Request) -> wire.Answer:
        with self._lock:
            self.requests.append(request)
            parts = request.path.split("/")
            if len(parts) == 3 and parts[0] == "projects" and parts[2] == "jobs" and request.method == "POST":
                return self._insert_job(parts[1], request.body)
            if len(parts) == 4 and parts[2] == "jobs" and request.method == "GET":
                job = self.jobs.get(f"{parts[1]}/{parts[3]}")
                if job is None:
                    return not_found(request.path)
                job["status"] = job.pop("_final", job["status"])
                return 200, job
            if len(parts) == 6 and parts[2] == "datasets" and parts[4] == "tables" and request.method == "GET":
                table = self.tables.get(f"{parts[1]}.{parts[3]}.{parts[5]}")
                return (200, table) if table else not_found(request.path)
            if len(parts) == 4 and parts[2] == "datasets" and request.method == "GET":
                if f"{parts[1]}.{parts[3]}" not in self.datasets:
                    return not_found(request.path)
                return 200, {"datasetReference": {"projectId": parts[1], "datasetId": parts[3]}}
            return not_found(request.path)

    def _insert_job(self, project: str, body: dict[str, Any]) -> wire.Answer:
        reference = body.get("jobReference", {})
        job_id = reference.get("jobId", "")
        key = f"{project}/{job_id}"
        if not job_id:
            return 400, {
                "error": {"code": 400, "message": "jobReference.jobId is required", "status": "INVALID_ARGUMENT"}
            }
        if key in self.jobs:
            return 409, {
                "error": {"code": 409, "message": f"Already Exists: Job {project}:{job_id}", "status": "ALREADY_EXISTS"}
            }
        load = body.get("configuration", {}).get("load")
        if load is None:
            return 400, {
                "error": {"code": 400, "message": "the twin runs load jobs only", "status": "INVALID_ARGUMENT"}
            }
        error, rows = self._load(load)
        final: dict[str, Any] = {"state": "DONE"}
        if error:
            final["errorResult"] = {"reason": "invalid", "message": error}
            final["errors"] = [final["errorResult"]]
        job = {
            **body,
            "kind": "bigquery#job",
            "id": f"{project}:{reference.get('location', 'US')}.{job_id}",
            "jobReference": {"projectId": project, "location": reference.get("location", "US"), "jobId": job_id},
            "status": {"state": "RUNNING"},
            "_final": final,
            "statistics": {
                "creationTime": "1767225600000",
                "startTime": "1767225600000",
                "endTime": "1767225601000",
                "load": {"inputFiles": str(len(load.get("sourceUris", []))), "outputRows": str(rows)},
            },
        }
        self.jobs[key] = job
        return 200, {k: v for k, v in job.items() if k != "_final"}

    def _load(self, load: dict[str, Any]) -> tuple[str, int]:
        """Run the load: ('', rows loaded) or (BigQuery's kind of message, 0); the table changes only on success."""
        import pyarrow.parquet as pq

        import storage

        destination = load.get("destinationTable", {})
        table_id = f"{destination.get('projectId')}.{destination.get('datasetId')}.{destination.get('tableId')}"
        if table_id not in self.tables:
            return f"Not found: Table {table_id}", 0
        if load.get("sourceFormat") != "PARQUET":
            return f"the twin loads PARQUET only, got {load.get('sourceFormat')}", 0
        rows, columns = 0, set()
        for uri in load.get("sourceUris", []):
            try:
                parquet = pq.ParquetFile(io.BytesIO(storage.read_bytes(uri)))
            except storage.NotFound:
                return f"Not found: URI {uri}", 0
            except Exception as exc:  # noqa: BLE001 - a job that cannot read its source fails; its insert did not
                return f"Error while reading data, error message: {exc}", 0
            rows += parquet.metadata.num_rows
            columns |= set(parquet.schema_arrow.names)
        fields = load.get("schema", {}).get("fields", [])
        missing = [f["name"] for f in fields if f["name"] not in columns]
        if missing:
            return f"Provided Schema does not match Table {table_id}. Field {missing[0]} is missing in the source", 0
        table = self.tables[table_id]
        before = 0 if load.get("writeDisposition") == "WRITE_TRUNCATE" else int(table["numRows"])
        table.update(numRows=str(before + rows), schema={"fields": fields} if fields else table["schema"])
        if "destinationEncryptionConfiguration" in load:
            table["encryptionConfiguration"] = load["destinationEncryptionConfiguration"]
        return "", rows


@contextmanager
def serve() -> Iterator[FakeBigQuery]:
    """Start it on an ephemeral port; `fake.endpoint` is the value of BIGQUERY_EMULATOR_HOST."""
    fake = FakeBigQuery()

    def answer(handler: BaseHTTPRequestHandler, raw: bytes) -> wire.Answer:
        request = wire.parse(
            handler.command, handler.path, raw, ("/bigquery/v2/",), handler.headers.get("Authorization", "")
        )
        return fake.answer(request)

    with wire.serve(answer) as url:
        fake.endpoint = url
        yield fake
