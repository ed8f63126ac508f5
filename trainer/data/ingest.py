"""`python -m trainer ingest`: validate the four Fashion-MNIST IDX files and store them as a dataset version.

Why content-addressed and manifest-last: the version id is derived from the files' hashes, so re-ingesting the
same data is recognisably a no-op, and a version counts as complete only once its manifest exists. All
validation happens in memory before the first write, so bad input writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import storage
from contracts.dataset import CLASS_NAMES, DATASET_NAME
from contracts.layout import LATEST_FILE, MANIFEST_FILE
from trainer.data import idx
from trainer.data.commit_marker import check_set, read_marker
from trainer.data.dataset import dataset_root, version_uri
from trainer.errors import CommandError

DOWNLOAD_TIMEOUT_S = 60
MAX_DOWNLOAD_BYTES = 128 * 1024 * 1024  # per file; the largest official .gz is 26,421,880 bytes
_CHUNK = 1 << 20
_SHA256_HEX = 64


@dataclass(frozen=True)
class Source:
    kind: str  # "directory" | "gcs" | "url"
    location: str

    @classmethod
    def parse(cls, location: str) -> Source:
        if storage.is_gcs(location):
            return cls("gcs", location.rstrip("/"))
        if location.startswith(("http://", "https://")):
            return cls("url", location if location.endswith("/") else location + "/")
        return cls("directory", str(Path(location).expanduser()))


def add_arguments(parser) -> None:
    parser.add_argument(
        "--source",
        metavar="DIR|gs://URI|URL",
        help="where the four .gz files are; default: config data.source, then the Debian package "
        "directory, then the canonical download (checksum-verified, cached)",
    )
    parser.add_argument(
        "--sha256",
        action="append",
        default=[],
        metavar="FILE=HEX",
        help="expected SHA-256 of one of the four .gz files (repeat for each); checked for every source, and "
        "needed for a non-canonical URL's cached files to be reused",
    )
    parser.add_argument(
        "--commit-marker",
        metavar="PATH|gs://URI",
        help="the upload's commit marker (JSON: each file's name, size, sha256): refuse a set that differs from "
        "it (trainer/data/commit_marker.py); the new-data trigger passes it",
    )
    parser.add_argument(
        "--require-official",
        action="store_true",
        help="fail instead of warning when the files are not the published Fashion-MNIST files",
    )


def choose_source(settings, requested: str | None) -> Source:
    """The source to read: --source, else data.source, else the Debian directory if complete, else the download."""
    if requested:
        return Source.parse(requested)
    if settings.data.source:
        return Source.parse(settings.data.source)
    debian = Path(settings.data.debian_dir)
    if all((debian / name).is_file() for name in idx.FILE_NAMES.values()):
        return Source("directory", str(debian))
    print(
        f"{debian} does not hold the four files (Debian package dataset-fashion-mnist not installed); "
        f"downloading from {settings.data.download_url}"
    )
    return Source("url", Source.parse(settings.data.download_url).location)


# ---- fetching ---------------------------------------------------------------------------------------------------


def _missing(name: str, where: str) -> idx.IdxError:
    return idx.IdxError(
        name, "file is missing", f"{where} must hold all four files: " + ", ".join(idx.FILE_NAMES.values())
    )


def _read_directory(directory: str) -> tuple[dict[str, bytes], dict[str, str]]:
    root = Path(directory)
    if not root.is_dir():
        raise CommandError(
            f"{directory}: source directory does not exist. Fix: pass --source with a directory, "
            "gs:// URI or URL that holds the four Fashion-MNIST .gz files"
        )
    blobs, names = {}, {}
    for role, name in idx.FILE_NAMES.items():
        path = root / name
        names[role] = str(path)
        try:
            blobs[role] = path.read_bytes()
        except FileNotFoundError:
            raise _missing(str(path), directory) from None
        except OSError as exc:
            raise CommandError(f"{path}: cannot read ({exc.strerror}). Fix: check the file's permissions") from None
    return blobs, names


def _read_gcs(prefix: str) -> tuple[dict[str, bytes], dict[str, str]]:
    try:
        present = set(storage.list_uris(prefix))
    except storage.StorageError as exc:
        raise CommandError(
            f"cannot read the source bucket {prefix}: {exc}. Fix: check the bucket name and that "
            "these credentials may read it (roles/storage.objectViewer)"
        ) from None
    blobs, names = {}, {}
    from tqdm import tqdm

    with tqdm(total=len(idx.ROLES), unit="file", desc=f"read {prefix}", disable=None) as bar:
        for role, name in idx.FILE_NAMES.items():
            uri = storage.join(prefix, name)
            names[role] = uri
            if uri not in present:
                raise _missing(uri, prefix)
            try:
                blobs[role] = storage.read_bytes(uri)
            except storage.StorageError as exc:
                raise CommandError(f"cannot read {uri}: {exc}. Fix: check that these credentials may read it") from None
            bar.update(1)
    return blobs, names


def parse_checksums(values: list[str]) -> dict[str, str]:
    """`--sha256 FILE=HEX` values -> {file name: hex}; CommandError naming the bad value."""
    known = set(idx.FILE_NAMES.values())
    checksums = {}
    for value in values:
        name, _, digest = value.partition("=")
        digest = digest.strip().lower()
        if name not in known or len(digest) != _SHA256_HEX or any(c not in "0123456789abcdef" for c in digest):
            raise CommandError(
                f"--sha256 {value[:100]!r}: expected FILE=HEX with FILE one of {', '.join(sorted(known))} and HEX "
                "the file's 64-character SHA-256 (sha256sum FILE prints it)"
            )
        checksums[name] = digest
    return checksums


def _oversize(url: str) -> CommandError:
    return CommandError(
        f"{url}: more than {MAX_DOWNLOAD_BYTES:,} bytes; a Fashion-MNIST .gz file is at most 26,421,880. Fix: check "
        "the URL, or download the files yourself and pass --source DIR"
    )


def _download(url: str, dest: Path) -> None:
    """Stream one URL to dest with a progress bar, at most MAX_DOWNLOAD_BYTES; the file appears only when complete."""
    from tqdm import tqdm

    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, tmp.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            if total and total > MAX_DOWNLOAD_BYTES:
                raise _oversize(url)
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", disable=None) as bar:
                while chunk := response.read(_CHUNK):
                    received += len(chunk)
                    if received > MAX_DOWNLOAD_BYTES:
                        raise _oversize(url)
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    except CommandError:
        tmp.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise CommandError(
            f"cannot download {url}: {reason}. Fix: check the network, or install the Debian package "
            "(sudo apt-get install dataset-fashion-mnist), or pass --source DIR holding the four "
            "files"
        ) from None


def _read_url(base_url: str, settings, checksums: dict[str, str]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Download into the cache, reusing only cached files that are verified: against the published MD5s for the
    canonical URL, against the user's --sha256 for any other URL (without one, a file is downloaded afresh)."""
    canonical = base_url == Source.parse(settings.data.download_url).location
    if not canonical and len(checksums) < len(idx.FILE_NAMES):
        print(
            f"note: {base_url} is not the canonical download, so only files with a --sha256 are verified and "
            "reused from the cache; the others are downloaded afresh"
        )
    cache = _url_cache(settings, base_url)
    cache.mkdir(parents=True, exist_ok=True)
    blobs, names = {}, {}
    for role, name in idx.FILE_NAMES.items():
        url, path = base_url + name, cache / name
        names[role] = url
        published = idx.PUBLISHED[role].gz_md5

        def verified(data: bytes, name: str = name, published: str = published) -> bool:
            if canonical:
                return _md5(data) == published
            return name in checksums and _sha256(data) == checksums[name]

        if not (path.is_file() and verified(path.read_bytes())):
            _download(url, path)
        data = path.read_bytes()
        if canonical and _md5(data) != published:
            path.unlink(missing_ok=True)
            raise CommandError(
                f"{url}: downloaded file's MD5 {_md5(data)} differs from the published {published}; "
                "the download is corrupt or the server changed. Fix: run ingest again; if it "
                "persists, install the Debian package dataset-fashion-mnist"
            )
        blobs[role] = data
    print(f"downloaded files cached in {cache}")
    return blobs, names


def _url_cache(settings, base_url: str) -> Path:
    slug = hashlib.sha256(base_url.encode()).hexdigest()[:12]
    return Path(settings.data.cache_dir).expanduser() / "downloads" / slug


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(source: Source, settings, checksums: dict[str, str] | None = None) -> tuple[dict[str, bytes], dict[str, str]]:
    """The four files' bytes by role, and the names (paths/URIs) errors should mention; every file with a
    user-given SHA-256 (`checksums`, by file name) must match it."""
    checksums = checksums or {}
    if source.kind == "directory":
        blobs, names = _read_directory(source.location)
    elif source.kind == "gcs":
        blobs, names = _read_gcs(source.location)
    else:
        blobs, names = _read_url(source.location, settings, checksums)
    for role, name in idx.FILE_NAMES.items():
        if name in checksums and _sha256(blobs[role]) != checksums[name]:
            if source.kind == "url":
                (_url_cache(settings, source.location) / name).unlink(missing_ok=True)
            raise CommandError(
                f"{names[role]}: SHA-256 {_sha256(blobs[role])} differs from the expected {checksums[name]} "
                "(--sha256); the file is not the one you meant. Nothing was stored"
            )
    return blobs, names


# ---- storing ----------------------------------------------------------------------------------------------------


def build_manifest(files: idx.IdxSet, source: Source) -> dict:
    return {
        "dataset": DATASET_NAME,
        "version": files.version,
        "hash": files.dataset_hash,
        "hash_method": "sha256 over the four files' sha256 hex digests: train images, train labels, test images, "
        "test labels",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"kind": source.kind, "location": source.location},
        "official": files.official,
        "warnings": files.warnings,
        "format": "gzipped IDX, uint8",
        "image_shape": list(idx.IMAGE_SHAPE),
        "counts": files.counts(),
        "class_names": list(CLASS_NAMES),
        "class_distribution": files.class_distribution(),
        "files": {
            role: {
                "name": f.name.rsplit("/", 1)[-1],
                "sha256": f.sha256,
                "bytes": f.size,
                "md5": f.gz_md5,
                "content_md5": f.content_md5,
                "shape": list(f.array.shape),
            }
            for role, f in files.files.items()
        },
    }


def _point_latest(settings, version: str) -> str:
    uri = storage.join(dataset_root(settings), LATEST_FILE)
    try:
        previous = storage.read_text(uri).strip()
    except storage.NotFound:
        previous = None
    if previous != version:
        storage.write_text(uri, version + "\n")
    return previous


def _existing_manifest(base: str) -> dict | None:
    try:
        return json.loads(storage.read_text(storage.join(base, MANIFEST_FILE)))
    except storage.NotFound:
        return None
    except ValueError:
        return None  # unreadable manifest: the version is rewritten


def _write_version(settings, files: idx.IdxSet, blobs: dict[str, bytes], source: Source) -> None:
    """Files first, manifest last; on failure remove what was written so no partial version remains."""
    from tqdm import tqdm

    base = version_uri(settings, files.version)
    try:
        with tqdm(
            total=sum(len(b) for b in blobs.values()),
            unit="B",
            unit_scale=True,
            desc=f"store {files.version}",
            disable=None,
        ) as bar:
            for role in idx.ROLES:
                storage.write_bytes(
                    storage.join(base, idx.FILE_NAMES[role]), blobs[role], content_type="application/gzip"
                )
                bar.update(len(blobs[role]))
        manifest = build_manifest(files, source)
        storage.write_text(
            storage.join(base, MANIFEST_FILE), json.dumps(manifest, indent=2) + "\n", content_type="application/json"
        )
    except storage.StorageError as exc:
        storage.delete_tree(base)
        raise CommandError(f"cannot write dataset version {files.version} to {base}: {exc}") from None


def ingest(
    settings,
    source: Source,
    *,
    require_official: bool = False,
    checksums: dict[str, str] | None = None,
    commit_marker: str | None = None,
) -> str:
    """Fetch, validate, store; returns the version id. Raises CommandError (nothing written) on bad input,
    including a set that differs from its `commit_marker`'s manifest."""
    print(f"source: {source.kind} {source.location}")
    marker = read_marker(commit_marker) if commit_marker else None
    try:
        blobs, names = fetch(source, settings, checksums)
        if marker is not None:
            check_set(blobs, names, marker, str(commit_marker))
        hashes = [hashlib.sha256(blobs[role]).hexdigest() for role in idx.ROLES]
        version = "v-" + hashlib.sha256("".join(hashes).encode("ascii")).hexdigest()[:12]
        base = version_uri(settings, version)
        existing = _existing_manifest(base)
        if existing and [existing["files"][r]["sha256"] for r in idx.ROLES] == hashes:
            previous = _point_latest(settings, version)
            moved = "" if previous == version else f"; LATEST now points to it (was {previous})"
            print(f"dataset version {version} is already stored at {base} (same four files): nothing to do{moved}")
            return version
        files = idx.validate_set(blobs, names)
    except idx.IdxError as exc:
        raise CommandError(f"{exc} (nothing was written)") from None
    except storage.StorageError as exc:
        raise CommandError(f"cannot read the datasets bucket: {exc}") from None
    for warning in files.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if require_official and not files.official:
        raise CommandError(
            "the files are not the published Fashion-MNIST files and --require-official was given "
            "(nothing was written). Fix: ingest the official files, or drop --require-official"
        )
    _write_version(settings, files, blobs, source)
    previous = _point_latest(settings, files.version)
    counts = files.counts()
    print(
        f"stored dataset version {files.version} at {version_uri(settings, files.version)} "
        f"({counts['train']:,} train / {counts['test']:,} test images, "
        f"{'official Fashion-MNIST' if files.official else 'custom data'}); LATEST -> {files.version}"
        + (f" (was {previous})" if previous and previous != files.version else "")
    )
    return files.version


def run(args, settings) -> int:
    try:
        ingest(
            settings,
            choose_source(settings, args.source),
            require_official=args.require_official,
            checksums=parse_checksums(getattr(args, "sha256", None) or []),
            commit_marker=getattr(args, "commit_marker", None),
        )
    except storage.StorageError as exc:
        raise CommandError(f"datasets bucket {settings.datasets_bucket}: {exc}") from None
    return 0
