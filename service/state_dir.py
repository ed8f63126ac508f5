"""A private scratch directory shared by the gunicorn master and its workers, one per server start.

It holds prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR) and the drift counts, so metrics and
drift reports cover every worker. A fresh directory per start means no stale counts from an earlier run; the
master removes it on exit, and a start removes the directories of earlier masters that died without exiting
(SIGKILL, out of memory): their name carries the pid, and a pid that no longer runs cannot come back for them.
Must run before prometheus_client is imported.
"""

from __future__ import annotations

import os

from contracts.serving import Env

_created: str | None = None
PREFIXES = ("fmnist-service-", "fmnist-model-")


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_leftovers(parent: str) -> list[str]:
    """Remove this user's state directories in `parent` whose creating process is gone; return their paths."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        prefix = next((p for p in PREFIXES if entry.name.startswith(p)), None)
        if prefix is None:
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        try:
            if not pid_text.isdigit() or entry.is_symlink() or not entry.is_dir():
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.getuid() or _is_running(int(pid_text)):
                continue
        except OSError:
            continue
        import shutil

        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def prepare_state_dir() -> str:
    """Create the directory once per process and export SERVICE_STATE_DIR and PROMETHEUS_MULTIPROC_DIR.

    Not tempfile.mkdtemp: importing tempfile (and shutil with it) costs ~15 ms of cold start."""
    global _created
    if _created is None:
        parent = os.environ.get("TMPDIR") or "/tmp"
        remove_leftovers(parent)
        _created = os.path.join(parent, f"fmnist-service-{os.getpid()}-{os.urandom(4).hex()}")
        os.mkdir(_created, 0o700)
        os.mkdir(os.path.join(_created, "prometheus"))
        os.mkdir(os.path.join(_created, "drift"))
        os.environ[Env.SERVICE_STATE_DIR] = _created
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(_created, "prometheus")
    return _created


def remove_state_dir() -> None:
    if _created is not None:
        import shutil

        shutil.rmtree(_created, ignore_errors=True)
