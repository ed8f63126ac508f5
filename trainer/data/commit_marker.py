"""A data drop is complete only when it matches its commit marker's manifest.

Why: the trigger used to start a run on the first of four uploads, so a run could ingest a half-replaced set (an
old test file beside a new training file). The uploader now writes the four files, then one commit marker: a JSON
manifest listing each file's name, size and sha256,
    {"files": [{"name": "train-images-idx3-ubyte.gz", "size": 26421880, "sha256": "<64 hex>"}, ...]}
and the trigger waits for the marker (its object name is the trigger's, in contracts/layout.py). Ingest, given
the marker (`--commit-marker`), refuses a set whose files are missing from the manifest, or differ from it in
size or content, naming the file and both values; nothing is written then.
"""

from __future__ import annotations

import hashlib
import json
import re

import storage
from trainer.errors import CommandError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_marker(data: bytes, where: str) -> dict[str, tuple[int, str]]:
    """{file name: (size, sha256)} from a marker; CommandError naming the field at fault."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise CommandError(f"{where}: the commit marker is not valid JSON ({exc}); nothing was ingested") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, list) or not files:
        raise CommandError(f"{where}: the commit marker needs a non-empty 'files' list of {{name, size, sha256}}")
    out: dict[str, tuple[int, str]] = {}
    for i, entry in enumerate(files):
        name = entry.get("name") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or "/" in name:
            raise CommandError(f"{where}: files[{i}].name must be a file name without '/'")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CommandError(f"{where}: files[{i}].size ({name}) must be a whole number of bytes")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise CommandError(f"{where}: files[{i}].sha256 ({name}) must be 64 lowercase hex characters")
        if name in out:
            raise CommandError(f"{where}: {name} is listed twice")
        out[name] = (size, sha)
    return out


def check_set(blobs: dict[str, bytes], names: dict[str, str], marker: dict[str, tuple[int, str]], where: str) -> None:
    """Every file read (by role: bytes, and the path or URI it came from) is in the marker with its size and
    sha256; CommandError naming the first one that is not."""
    for role, data in blobs.items():
        name = names[role].rstrip("/").rsplit("/", 1)[-1]
        if name not in marker:
            raise CommandError(
                f"{names[role]} is not in the commit marker {where} (it lists {', '.join(sorted(marker))}): the set "
                "is not the one that was committed; nothing was ingested. Upload the set again, marker last"
            )
        size, sha = marker[name]
        found = hashlib.sha256(data).hexdigest()
        if len(data) != size or found != sha:
            raise CommandError(
                f"{names[role]}: {len(data):,} bytes, sha256 {found}; the commit marker {where} records {size:,} "
                f"bytes, sha256 {sha}. The file changed after the marker was written (or is half uploaded); "
                "nothing was ingested. Upload the set again, marker last"
            )


def read_marker(uri: str) -> dict[str, tuple[int, str]]:
    try:
        return parse_marker(storage.read_bytes(uri), uri)
    except storage.NotFound:
        raise CommandError(
            f"{uri}: no commit marker: the set is not complete yet (the uploader writes the marker last)"
        ) from None
    except storage.StorageError as exc:
        raise CommandError(f"cannot read the commit marker {uri}: {exc}") from None
