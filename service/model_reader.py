"""Read the files of a model, local or on GCS, and keep every name read from a file inside its directory.

The serving artifact stays a file (a gs:// one is streamed into a local file): sessions are built from a path,
so no copy of the model's bytes sits in memory. Why every name read from a file is checked (`contained`): a
registry record's `path` and a metadata `serving_artifact` come from the bucket, and must not steer a read outside
it (an absolute name, `..`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from service.gcs import GCS_SCHEME, GcsError, GcsNotFound, GcsReader
from service.model_errors import ModelLoadError, ModelReadError, ObjectNotFound


def scratch_dir(state_dir: str | None = None) -> str:
    """Where downloads go: the server's state directory (ServiceConfig.state_dir), else TMPDIR."""
    return state_dir or os.environ.get("TMPDIR") or "/tmp"


def sha256_of(fh: BinaryIO) -> str:
    """SHA-256 of an open file from its start, 1 MiB at a time."""
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def join(base: str, *parts: str) -> str:
    if base.startswith(GCS_SCHEME):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


class ModelReader:
    def __init__(self, state_dir: str | None = None) -> None:
        self._gcs: GcsReader | None = None
        self.scratch_dir = scratch_dir(state_dir)

    def local_copy(self, uri: str, cache_dir: str | None) -> str:
        """A local file holding the object: the file itself when local, else a download into cache_dir
        (streamed: the model never sits in memory whole)."""
        if not uri.startswith(GCS_SCHEME):
            if not Path(uri).is_file():
                raise ObjectNotFound(f"{uri} does not exist")
            return uri
        if cache_dir is None:
            cache_dir = os.path.join(self.scratch_dir, f"fmnist-model-{os.getpid()}-{os.urandom(4).hex()}")
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, uri.rsplit("/", 1)[-1])
        try:
            with open(path, "wb") as fh:
                self.download(uri, fh)
        except BaseException:
            Path(path).unlink(missing_ok=True)
            raise
        return path

    def download(self, uri: str, sink: BinaryIO) -> None:
        try:
            self.gcs().download(uri, sink)
        except GcsNotFound:
            raise ObjectNotFound(f"{uri} does not exist") from None
        except GcsError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc}") from None

    def gcs(self) -> GcsReader:
        self._gcs = self._gcs or GcsReader()
        return self._gcs

    def read(self, uri: str, generation: int | None = None) -> bytes:
        if uri.startswith(GCS_SCHEME):
            try:
                return self.gcs().read(uri, generation)
            except GcsNotFound:
                raise ObjectNotFound(f"{uri} does not exist") from None
            except GcsError as exc:
                raise ModelReadError(f"cannot read {uri}: {exc}") from None
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{uri} does not exist") from None
        except OSError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc.strerror}") from None

    def version_token(self, uri: str) -> object:
        """What changes whenever the object is rewritten, read cheaply: the GCS generation (one small metadata
        request) or the local file's inode, size and change times; None when it does not exist."""
        if uri.startswith(GCS_SCHEME):
            try:
                return self.gcs().generation(uri)
            except GcsNotFound:
                return None
            except GcsError as exc:
                raise ModelReadError(f"cannot read {uri}: {exc}") from None
        try:
            st = os.stat(uri)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc.strerror}") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def read_versioned(self, uri: str) -> tuple[object, bytes | None]:
        """(token, bytes) of one and the same version of the object; (None, None) when it does not exist.

        The token comes first and the read is pinned to it (GCS generation; locally the open file's own
        status), so a rewrite in between is seen as a change by the next poll instead of being missed."""
        if uri.startswith(GCS_SCHEME):
            token = self.version_token(uri)
            if token is None:
                return None, None
            try:
                return token, self.read(uri, int(str(token)))
            except ObjectNotFound:  # replaced between the two requests: the next poll sees the new generation
                return None, None
        try:
            with open(uri, "rb") as fh:
                st = os.fstat(fh.fileno())
                return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), fh.read()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise ModelReadError(f"cannot read {uri}: {exc.strerror}") from None


def contained(base: str, name: object, where: str, field: str) -> str:
    """`base` joined with the relative `name` read from `where`; ModelLoadError unless it stays inside `base`."""
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"{where}: {field} must be a non-empty string, got {type(name).__name__}")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or "://" in name or ":" in parts[0] or ".." in parts or "\0" in name:
        raise ModelLoadError(
            f"{where}: {field} {name[:80]!r} must be a path relative to {base} without '..' (refused: it would "
            "read outside the models bucket or the model directory)"
        )
    joined = join(base, name)
    if not base.startswith(GCS_SCHEME):
        root = Path(base).resolve()
        if not Path(joined).resolve().is_relative_to(root):
            raise ModelLoadError(f"{where}: {field} {name[:80]!r} leads outside {base} (through a link); refused")
    return joined
