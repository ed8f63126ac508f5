"""A private scratch directory shared by the gunicorn master and its workers, one per server start.

It holds prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR) and the drift counts, so metrics and
drift reports cover every worker. A fresh directory per start means no stale counts from an earlier run; the
master removes it on exit. Must run before prometheus_client is imported.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

_created: Optional[str] = None


def prepare_state_dir() -> str:
    """Create the directory once per process and export SERVICE_STATE_DIR and PROMETHEUS_MULTIPROC_DIR."""
    global _created
    if _created is None:
        _created = tempfile.mkdtemp(prefix="fmnist-service-")
        os.makedirs(os.path.join(_created, "prometheus"))
        os.makedirs(os.path.join(_created, "drift"))
        os.environ["SERVICE_STATE_DIR"] = _created
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(_created, "prometheus")
    return _created


def remove_state_dir() -> None:
    if _created is not None:
        shutil.rmtree(_created, ignore_errors=True)
