"""A private scratch directory shared by the gunicorn master and its workers, one per server start.

It holds prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR) and the drift counts, so metrics and
drift reports cover every worker. A fresh directory per start means no stale counts from an earlier run; the
master removes it on exit. Must run before prometheus_client is imported.
"""

from __future__ import annotations

import os

_created: str | None = None


def prepare_state_dir() -> str:
    """Create the directory once per process and export SERVICE_STATE_DIR and PROMETHEUS_MULTIPROC_DIR.

    Not tempfile.mkdtemp: importing tempfile (and shutil with it) costs ~15 ms of cold start."""
    global _created
    if _created is None:
        parent = os.environ.get("TMPDIR") or "/tmp"
        _created = os.path.join(parent, f"fmnist-service-{os.getpid()}-{os.urandom(4).hex()}")
        os.mkdir(_created, 0o700)
        os.mkdir(os.path.join(_created, "prometheus"))
        os.mkdir(os.path.join(_created, "drift"))
        os.environ["SERVICE_STATE_DIR"] = _created
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(_created, "prometheus")
    return _created


def remove_state_dir() -> None:
    if _created is not None:
        import shutil

        shutil.rmtree(_created, ignore_errors=True)
