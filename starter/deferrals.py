"""Where a trigger that arrived during a run waits: one JSON object (Cloud Storage, or a local file).

Why an object and not the function's memory: the function scales to zero between triggers, and a deferred trigger
must survive until the run that held it ends (hours). Cloud Storage's generation preconditions make every change a
compare-and-swap, so a change made meanwhile is re-read, never overwritten.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from starter.events import Trigger

TIMEOUT_S = 30
ATTEMPTS = 5  # compare-and-swap retries before giving up (another writer won each time)
BOUNDARY = "fmnist-starter-deferrals"  # of the multipart upload: in no trigger (generations, incident ids, minutes)


class DeferralError(RuntimeError):
    """The deferrals object could not be read or written (the function answers 500; the sender retries)."""


def _encode(triggers: list[Trigger]) -> bytes:
    return json.dumps({"triggers": [t.__dict__ for t in triggers]}, indent=1, sort_keys=True).encode()


def _decode(raw: bytes) -> list[Trigger]:
    return [Trigger(**t) for t in json.loads(raw or b"{}").get("triggers", [])]


def _merge(triggers: list[Trigger], new: Trigger) -> list[Trigger]:
    same = any((t.kind, t.key) == (new.kind, new.key) for t in triggers)
    return triggers if same else [*triggers, new]


@dataclass
class GcsDeferrals:
    """`gs://<bucket>/<object>` through the Cloud Storage JSON API (or the emulator STORAGE_EMULATOR_HOST names)."""

    session: requests.Session
    uri: str
    host: str = "https://storage.googleapis.com"

    @classmethod
    def at(cls, session: requests.Session, uri: str, environ: dict[str, str] | None = None) -> GcsDeferrals:
        emulator = (environ if environ is not None else dict(os.environ)).get("STORAGE_EMULATOR_HOST", "")
        if emulator and "://" not in emulator:
            emulator = f"http://{emulator}"
        deferrals = cls(session, uri, emulator.rstrip("/") or cls.host)
        if not uri.startswith("gs://") or not all(deferrals._bucket_object):  # gs:///o, gs://b/: fail at first use
            raise DeferralError(f"{uri!r}: the deferrals object must be gs://<bucket>/<object>")
        return deferrals

    @property
    def _bucket_object(self) -> tuple[str, str]:
        bucket, _, name = self.uri[5:].partition("/")
        return bucket, name

    def _read(self) -> tuple[list[Trigger], int]:
        """The triggers and the object's generation (0: no object)."""
        bucket, name = self._bucket_object
        url = f"{self.host}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        meta = self.session.get(url, timeout=TIMEOUT_S)
        if meta.status_code == 404:
            return [], 0
        self._check(meta, "read")
        generation = int(meta.json()["generation"])
        media = self.session.get(url, params={"alt": "media", "generation": str(generation)}, timeout=TIMEOUT_S)
        if media.status_code == 404:  # deleted between the two calls
            return [], 0
        self._check(media, "read")
        return _decode(media.content), generation

    def _write(self, triggers: list[Trigger], generation: int) -> bool:
        """Replace the object if it is still at `generation` (0: if absent); False when another writer changed it.

        A multipart upload, and an empty list rather than a delete: Cloud Storage honours `ifGenerationMatch` on
        every insert and delete, but fake-gcs-server (the tests' stand-in) only on multipart and resumable
        inserts, so this is the one write whose compare-and-swap both enforce.
        """
        bucket, name = self._bucket_object
        metadata = json.dumps({"name": name, "contentType": "application/json"})
        body = b"".join(
            [
                f"--{BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n".encode(),
                f"--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n".encode(),
                _encode(triggers),
                f"\r\n--{BOUNDARY}--\r\n".encode(),
            ]
        )
        response = self.session.post(
            f"{self.host}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "multipart", "ifGenerationMatch": str(generation)},
            data=body,
            headers={"Content-Type": f"multipart/related; boundary={BOUNDARY}"},
            timeout=TIMEOUT_S,
        )
        if response.status_code == 412:
            return False
        self._check(response, "write")
        return True

    def _change(self, change: Any) -> None:
        for _ in range(ATTEMPTS):
            triggers, generation = self._read()
            changed = change(triggers)
            if changed == triggers or self._write(changed, generation):
                return
        raise DeferralError(f"{self.uri}: changed by another writer {ATTEMPTS} times in a row; retry")

    def add(self, trigger: Trigger) -> None:
        self._change(lambda triggers: _merge(triggers, trigger))

    def pending(self) -> list[Trigger]:
        return self._read()[0]

    def remove(self, triggers: list[Trigger]) -> None:
        self._change(lambda current: [t for t in current if t not in triggers])

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code >= 400:
            raise DeferralError(f"{what} {self.uri}: HTTP {response.status_code}: {response.text[:300]}")


@dataclass
class FileDeferrals:
    """The same on a local file (the local starter, lifecycle/alert_starter.py): one writer, one process."""

    path: Path

    def pending(self) -> list[Trigger]:
        return _decode(self.path.read_bytes()) if self.path.is_file() else []

    def add(self, trigger: Trigger) -> None:
        self._save(_merge(self.pending(), trigger))

    def remove(self, triggers: list[Trigger]) -> None:
        self._save([t for t in self.pending() if t not in triggers])

    def _save(self, triggers: list[Trigger]) -> None:
        if not triggers:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_bytes(_encode(triggers))
        scratch.replace(self.path)  # atomic: a crash leaves the old list or the new one
