"""Read and write local paths and `gs://` URIs through one small interface, atomically.

Why: every step writes into a bucket (a directory on the local target, a GCS bucket on gcp). A reader must never
see a half-written file or object, and the registry index needs compare-and-swap, so writes go through
temp-file + rename locally and single-request uploads with generation preconditions on GCS.
A unit of its own (it imports no other unit): the trainer, the lifecycle, notebooks and benches use it. The service
does not: its image has no google-cloud-storage and only reads, so it keeps its slim reader (service/gcs.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

GCS_SCHEME = "gs://"
_ABSENT = "absent"


class StorageError(OSError):
    """A read or write failed; the message names the URI."""


class NotFound(StorageError):
    """The file or object does not exist."""


class PreconditionFailed(StorageError):
    """A compare-and-swap write lost the race: someone else changed the object since it was read."""


@dataclass(frozen=True)
class Versioned:
    """Bytes of an object (None when absent) and an opaque token naming that exact state."""

    data: bytes | None
    token: int | str


def is_gcs(uri: str) -> bool:
    return str(uri).startswith(GCS_SCHEME)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or gs:// URI with '/'."""
    base = str(base)
    if is_gcs(base):
        out = base.rstrip("/")
        for part in parts:
            out += "/" + str(part).strip("/")
        return out
    return str(Path(base, *parts))


def split_gcs(uri: str) -> tuple[str, str]:
    """'gs://bucket/a/b' -> ('bucket', 'a/b')."""
    rest = uri[len(GCS_SCHEME) :]
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: a gs:// URI needs a bucket name (gs://BUCKET/PATH)")
    return bucket, name


_client = None
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp's 0600 would hide files from other users


def gcs_client():
    """One google-cloud-storage client per process; honours STORAGE_EMULATOR_HOST (tests use fake-gcs-server)."""
    global _client
    if _client is None:
        from google.cloud import storage as gcs

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _client = gcs.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=AnonymousCredentials()
            )
        else:
            _client = gcs.Client()
    return _client


def reset_client() -> None:
    """Forget the cached client (tests switch emulators)."""
    global _client
    _client = None


def _blob(uri: str):
    bucket, name = split_gcs(uri)
    return gcs_client().bucket(bucket).blob(name)


@contextmanager
def _gcs_errors(uri: str):
    from google.api_core import exceptions as gexc

    try:
        yield
    except gexc.NotFound as exc:
        raise NotFound(f"{uri}: not found") from exc
    except gexc.PreconditionFailed as exc:
        raise PreconditionFailed(f"{uri}: changed by another writer since it was read") from exc
    except gexc.Forbidden as exc:
        raise StorageError(
            f"{uri}: permission denied ({exc.message}); check the credentials' roles on the bucket"
        ) from exc
    except gexc.GoogleAPICallError as exc:
        raise StorageError(f"{uri}: {exc}") from exc


# ---- reads -----------------------------------------------------------------------------------------------------


_DOWNLOAD_ATTEMPTS = 3


def _download(blob, uri: str) -> bytes:
    """The object's bytes, read again when the body does not match the checksum GCS sent with it.

    The client checks each download's CRC32C against the object's: a mismatch is a torn or corrupted transfer (the
    emulator also tears a read that races a write), which a fresh read mends; the client itself does not retry it.
    """
    from google.cloud.storage.exceptions import DataCorruption

    for _ in range(_DOWNLOAD_ATTEMPTS):
        try:
            with _gcs_errors(uri):
                return blob.download_as_bytes()
        except DataCorruption as exc:
            torn = exc
    raise StorageError(
        f"{uri}: {_DOWNLOAD_ATTEMPTS} downloads in a row did not match the object's checksum; "
        "check the network path to Cloud Storage (a proxy rewriting bodies?) and retry"
    ) from torn


def read_bytes(uri: str) -> bytes:
    uri = str(uri)
    if is_gcs(uri):
        return _download(_blob(uri), uri)
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"{uri}: not found") from exc
    except IsADirectoryError as exc:
        raise StorageError(f"{uri}: is a directory, expected a file") from exc
    except OSError as exc:
        raise StorageError(f"{uri}: {exc.strerror}") from exc


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def exists(uri: str) -> bool:
    uri = str(uri)
    if is_gcs(uri):
        with _gcs_errors(uri):
            return _blob(uri).exists()
    return Path(uri).exists()


def list_uris(prefix: str) -> list[str]:
    """Every file/object under a directory or prefix, recursively, sorted."""
    prefix = str(prefix)
    if is_gcs(prefix):
        bucket, name = split_gcs(prefix)
        name = name.rstrip("/") + "/" if name else ""
        with _gcs_errors(prefix):
            return sorted(f"gs://{bucket}/{b.name}" for b in gcs_client().list_blobs(bucket, prefix=name))
    root = Path(prefix)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def read_versioned(uri: str) -> Versioned:
    """Bytes plus a token for write_if_unchanged: the GCS generation, or the content hash locally."""
    uri = str(uri)
    if is_gcs(uri):
        blob = _blob(uri)
        try:
            data = _download(blob, uri)
        except NotFound:
            return Versioned(None, 0)  # generation 0 = "must not exist" precondition
        with _gcs_errors(uri):
            return Versioned(data, int(blob.generation))
    try:
        data = Path(uri).read_bytes()
    except FileNotFoundError:
        return Versioned(None, _ABSENT)
    return Versioned(data, hashlib.sha256(data).hexdigest())


# ---- writes ----------------------------------------------------------------------------------------------------


def _write_local_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(uri: str, data: bytes, *, content_type: str | None = None) -> None:
    """Write atomically: readers see the old content or the new, never a part."""
    uri = str(uri)
    if is_gcs(uri):
        with _gcs_errors(uri):
            # upload_from_string sends one request for small data and a resumable upload for large; either way
            # the object appears only when the upload completes.
            _blob(uri).upload_from_string(data, content_type=content_type or "application/octet-stream")
        return
    try:
        _write_local_atomic(Path(uri), data)
    except OSError as exc:
        raise StorageError(f"{uri}: cannot write ({exc.strerror}); check the directory's permissions") from exc


def write_text(uri: str, text: str, *, content_type: str = "text/plain; charset=utf-8") -> None:
    write_bytes(uri, text.encode("utf-8"), content_type=content_type)


@contextmanager
def _local_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_if_unchanged(uri: str, data: bytes, token: int | str, *, content_type: str | None = None) -> None:
    """Compare-and-swap: write only if the object is still in the state `token` (from read_versioned) names.

    Raises PreconditionFailed otherwise. GCS: `if_generation_match`. Local: an flock around compare + rename.
    """
    uri = str(uri)
    if is_gcs(uri):
        with _gcs_errors(uri):
            _blob(uri).upload_from_string(
                data, content_type=content_type or "application/json", if_generation_match=int(token)
            )
        return
    path = Path(uri)
    with _local_lock(path):
        if read_versioned(uri).token != token:
            raise PreconditionFailed(f"{uri}: changed by another writer since it was read")
        _write_local_atomic(path, data)


def upload_file(local_path: str | Path, uri: str, *, progress: bool = False) -> None:
    """Copy a local file to a local path or gs:// URI atomically, with an optional progress bar."""
    local_path = Path(local_path)
    uri = str(uri)
    size = local_path.stat().st_size
    if is_gcs(uri):
        with _gcs_errors(uri):
            blob = _blob(uri)
            if progress:
                from tqdm import tqdm

                with (
                    local_path.open("rb") as src,
                    tqdm.wrapattr(
                        src, "read", total=size, unit="B", unit_scale=True, desc=f"upload {local_path.name}"
                    ) as wrapped,
                ):
                    blob.upload_from_file(wrapped, size=size)
            else:
                blob.upload_from_filename(str(local_path))
        return
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(local_path, tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_file(uri: str, local_path: str | Path) -> Path:
    """Copy a file or object to a local path atomically."""
    local_path = Path(local_path)
    uri = str(uri)
    if not is_gcs(uri):
        if not Path(uri).is_file():
            raise NotFound(f"{uri}: not found")
        upload_file(uri, str(local_path))
        return local_path
    local_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=local_path.parent)
    os.close(fd)
    try:
        with _gcs_errors(uri):
            _blob(uri).download_to_filename(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, local_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return local_path


def copy_tree(src_prefix: str, dest_prefix: str) -> list[str]:
    """Copy every file under src to the same relative path under dest (local or gs:// on either side)."""
    src_prefix = str(src_prefix).rstrip("/")
    written = []
    for src in list_uris(src_prefix):
        rel = src[len(src_prefix) :].lstrip("/")
        dest = join(dest_prefix, rel)
        if is_gcs(src):
            write_bytes(dest, read_bytes(src))
        else:
            upload_file(src, dest)  # local source: a streamed copy to a local path or a GCS object
        written.append(dest)
    return written


def delete(uri: str) -> None:
    """Remove one file or object; a missing one is not an error (the goal, absence, holds)."""
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core import exceptions as gexc

        with suppress(gexc.NotFound):
            _blob(uri).delete()
        return
    Path(uri).unlink(missing_ok=True)


def delete_tree(prefix: str) -> None:
    """Remove a directory or every object under a prefix (used to discard a staging area)."""
    prefix = str(prefix)
    if is_gcs(prefix):
        for uri in list_uris(prefix):
            with _gcs_errors(uri):
                _blob(uri).delete()
        return
    shutil.rmtree(prefix, ignore_errors=True)
