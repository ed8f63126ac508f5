"""One registered version's record, as the Google Cloud adapters' request tests give it to them."""

from __future__ import annotations

from contracts.registry_index import parse_record

RECORD = parse_record(
    "v20260101-000000-abcd",
    {
        "path": "registry/versions/v20260101-000000-abcd",
        "source": "custom",
        "dataset_version": "v-1",
        "metrics": {"accuracy": 0.93},
    },
    "index.json",
)
