"""Read and validate gzipped IDX files (the Fashion-MNIST format), fast and with one clear error per problem.

Why its own module: ingest validates raw input with it and `trainer.data.dataset` re-parses stored versions with it, so
the format rules live in one place. Everything works on bytes, so local files and gs:// objects are treated alike.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from contracts.dataset import IDX_FILE_NAMES as FILE_NAMES
from contracts.dataset import IDX_ROLES as ROLES
from contracts.dataset import IMAGE_SHAPE, NUM_CLASSES, OFFICIAL_COUNTS

__all__ = ["FILE_NAMES", "IMAGE_SHAPE", "NUM_CLASSES", "OFFICIAL_COUNTS", "ROLES", "IdxError", "IdxSet", "validate_set"]
UINT8_DTYPE_CODE = 0x08


@dataclass(frozen=True)
class PublishedChecksums:
    """MD5s published for the official files: of the .gz as downloaded, and of the decompressed IDX bytes.

    The .gz MD5s are in the Zalando README's download table; the decompressed MD5s are the ones torchvision
    checked (`raw_data`). Both are needed: Debian's `dataset-fashion-mnist` recompresses the files, so its .gz
    bytes differ from the download while the decompressed content is identical.
    """

    gz_md5: str
    content_md5: str


PUBLISHED = {
    "train_images": PublishedChecksums("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train_labels": PublishedChecksums("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "test_images": PublishedChecksums("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "test_labels": PublishedChecksums("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}


class IdxError(ValueError):
    """One IDX file (or the set of four) is unusable. The message names the file, the problem and the fix."""

    def __init__(self, file: str, problem: str, fix: str):
        self.file, self.problem, self.fix = file, problem, fix
        super().__init__(f"{file}: {problem}. Fix: {fix}")


_REDOWNLOAD = (
    "re-download it (or reinstall the Debian package dataset-fashion-mnist), "
    "or point --source at a directory holding the four intact files"
)


@dataclass
class IdxFile:
    """One validated file: its array and the hashes ingest records."""

    role: str
    name: str
    array: np.ndarray
    sha256: str
    gz_md5: str
    content_md5: str
    size: int

    @property
    def official(self) -> bool:
        return PUBLISHED[self.role].content_md5 == self.content_md5


@dataclass
class IdxSet:
    """The four validated files, plus warnings that do not stop ingest (e.g. not the published files)."""

    files: dict[str, IdxFile]
    warnings: list[str] = field(default_factory=list)

    @property
    def official(self) -> bool:
        return all(f.official for f in self.files.values())

    @property
    def dataset_hash(self) -> str:
        """sha256 over the four files' sha256 hex digests, in ROLES order (the dataset's identity)."""
        return hashlib.sha256("".join(self.files[r].sha256 for r in ROLES).encode("ascii")).hexdigest()

    @property
    def version(self) -> str:
        return "v-" + self.dataset_hash[:12]

    def counts(self) -> dict[str, int]:
        return {split: int(len(self.files[f"{split}_labels"].array)) for split in ("train", "test")}

    def class_distribution(self) -> dict[str, list[int]]:
        return {
            split: np.bincount(self.files[f"{split}_labels"].array, minlength=NUM_CLASSES).tolist()
            for split in ("train", "test")
        }


MAX_IDX_BYTES = 256 * 1024 * 1024  # decompressed size of one file; the largest official one is 47,040,016 bytes


def gunzip(data: bytes, name: str) -> bytes:
    """Decompress every gzip member and check CRC and length; truncation or corruption raises IdxError.

    At most MAX_IDX_BYTES come out: a small gzip bomb is refused before it can fill memory."""
    if data[:2] != b"\x1f\x8b":
        raise IdxError(
            name,
            f"not a gzip file (starts with {data[:2]!r}, expected b'\\x1f\\x8b')",
            "supply the gzipped IDX file (gzip it if you have the raw IDX), or " + _REDOWNLOAD,
        )
    parts = []
    rest = data
    room = MAX_IDX_BYTES
    while rest:
        decomp = zlib.decompressobj(wbits=31)
        try:
            parts.append(decomp.decompress(rest, room + 1))
        except zlib.error as exc:
            raise IdxError(name, f"corrupt gzip data ({exc})", _REDOWNLOAD) from None
        room -= len(parts[-1])
        if room < 0 or decomp.unconsumed_tail:
            raise IdxError(
                name,
                f"decompresses to more than {MAX_IDX_BYTES:,} bytes (a gzip bomb, or not Fashion-MNIST: the "
                "largest official file is 47,040,016 bytes)",
                "supply the four Fashion-MNIST files, or " + _REDOWNLOAD,
            )
        if not decomp.eof:
            raise IdxError(
                name, f"truncated gzip file: the compressed stream ends early ({len(data):,} bytes)", _REDOWNLOAD
            )
        rest = decomp.unused_data
        if rest and rest[:2] != b"\x1f\x8b":
            raise IdxError(name, f"{len(rest):,} bytes of trailing garbage after the gzip stream", _REDOWNLOAD)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def parse_idx(raw: bytes, name: str, ndim: int) -> np.ndarray:
    """Parse decompressed IDX bytes (magic 0x0000 08 <ndim>, big-endian uint32 dims, uint8 payload), zero-copy."""
    if len(raw) < 4:
        raise IdxError(name, f"only {len(raw)} bytes after decompression, too short for an IDX header", _REDOWNLOAD)
    zero, dtype_code, got_ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise IdxError(
            name,
            f"wrong IDX magic number 0x{raw[:4].hex()} (expected 0x000008{ndim:02x})",
            "this is not an IDX file; " + _REDOWNLOAD,
        )
    if dtype_code != UINT8_DTYPE_CODE:
        raise IdxError(
            name,
            f"IDX dtype code 0x{dtype_code:02x} is not unsigned byte (0x08)",
            "store pixels and labels as uint8 IDX, as the official files do",
        )
    if got_ndim != ndim:
        what = "images ([N, 28, 28])" if ndim == 3 else "labels ([N])"
        raise IdxError(
            name,
            f"has {got_ndim} dimensions, expected {ndim} for {what}",
            "check that images and labels files are not swapped or renamed",
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(name, "IDX header is truncated", _REDOWNLOAD)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload != expected:
        raise IdxError(
            name, f"header declares shape {list(dims)} = {expected:,} bytes but the file holds {payload:,}", _REDOWNLOAD
        )
    if ndim == 3 and tuple(dims[1:]) != IMAGE_SHAPE:
        raise IdxError(
            name,
            f"images are {dims[1]}x{dims[2]}, expected 28x28",
            "Fashion-MNIST images are 28x28 grayscale; resize your images to 28x28 before ingest",
        )
    if dims[0] == 0:
        raise IdxError(name, "holds zero items", "supply a file with at least one item")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_file(role: str, data: bytes, name: str | None = None) -> IdxFile:
    """Validate one gzipped IDX file given its bytes; `name` (path or URI) appears in errors."""
    name = name or FILE_NAMES[role]
    raw = gunzip(data, name)
    array = parse_idx(raw, name, 3 if role.endswith("images") else 1)
    if role.endswith("labels"):
        top = int(array.max())
        if top >= NUM_CLASSES:
            bad = int(np.count_nonzero(array >= NUM_CLASSES))
            raise IdxError(
                name,
                f"{bad:,} labels are outside 0-9 (largest {top})",
                "labels must be class indices 0-9 (T-shirt/top ... Ankle boot); fix or drop those items",
            )
    return IdxFile(
        role=role,
        name=name,
        array=array,
        sha256=hashlib.sha256(data).hexdigest(),
        gz_md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        content_md5=hashlib.md5(raw, usedforsecurity=False).hexdigest(),
        size=len(data),
    )


def validate_set(blobs: dict[str, bytes], names: dict[str, str] | None = None) -> IdxSet:
    """Validate the four files together: each file, then image/label counts per split, then published checksums.

    Files are checked in parallel threads (zlib and hashlib release the GIL), which keeps the real 70k images
    under a second. Not matching the published checksums or counts is a warning, so users can bring their own data.
    """
    names = names or {role: FILE_NAMES[role] for role in ROLES}
    with ThreadPoolExecutor(max_workers=len(ROLES)) as pool:
        futures = {role: pool.submit(read_idx_file, role, blobs[role], names[role]) for role in ROLES}
        files = {role: futures[role].result() for role in ROLES}  # first failing role in ROLES order raises
    for split in ("train", "test"):
        images, labels = files[f"{split}_images"], files[f"{split}_labels"]
        if len(images.array) != len(labels.array):
            raise IdxError(
                f"{images.name} + {labels.name}",
                f"{len(images.array):,} images but {len(labels.array):,} labels in the {split} split",
                "supply an images file and a labels file of the same split and size",
            )
    result = IdxSet(files=files)
    unofficial = [f.name for f in files.values() if not f.official]
    if unofficial:
        result.warnings.append(
            "not the published Fashion-MNIST files (checksums differ): "
            + ", ".join(unofficial)
            + "; ingesting them as custom data"
        )
    counts = result.counts()
    if counts != OFFICIAL_COUNTS:
        result.warnings.append(f"counts {counts} differ from the official {OFFICIAL_COUNTS}")
    return result
