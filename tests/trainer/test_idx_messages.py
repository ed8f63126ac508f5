"""IDX validation, word for word: each broken input gets exactly one message naming the file, the problem with its
numbers, and the fix; the limits (label 9 vs 10, one item vs none, header lengths) sit exactly where they should."""

import gzip
import struct

import numpy as np
import pytest

from tests.conftest import make_idx_dir
from trainer.data import idx

REDOWNLOAD = (
    "re-download it (or reinstall the Debian package dataset-fashion-mnist), "
    "or point --source at a directory holding the four intact files"
)


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1)


def labels_raw(values, magic=0x0801):
    return struct.pack(">II", magic, len(values)) + bytes(values)


def images_raw(n, h=28, w=28, dtype_code=0x08, ndim=3):
    dims = (n, h, w)[:ndim]
    return struct.pack(f">BBBB{ndim}I", 0, 0, dtype_code, ndim, *dims) + bytes(int(np.prod(dims)))


CASES = {
    "truncated gzip": (
        "train_labels",
        gz(labels_raw([1, 2, 3]))[:-9],
        f"truncated gzip file: the compressed stream ends early (22 bytes). Fix: {REDOWNLOAD}",
    ),
    "not gzip": (
        "train_labels",
        b"PK\x03\x04 zip",
        "not a gzip file (starts with b'PK', expected b'\\x1f\\x8b'). Fix: supply the gzipped IDX file (gzip it if "
        f"you have the raw IDX), or {REDOWNLOAD}",
    ),
    "trailing garbage": (
        "train_labels",
        gz(labels_raw([1, 2, 3])) + b"junk",
        f"4 bytes of trailing garbage after the gzip stream. Fix: {REDOWNLOAD}",
    ),
    "wrong magic": (
        "train_labels",
        gz(labels_raw([1, 2, 3], magic=0x12340801)),
        f"wrong IDX magic number 0x12340801 (expected 0x00000801). Fix: this is not an IDX file; {REDOWNLOAD}",
    ),
    "wrong magic, images": (
        "test_images",
        gz(b"\x01" + images_raw(1)[1:]),
        f"wrong IDX magic number 0x01000803 (expected 0x00000803). Fix: this is not an IDX file; {REDOWNLOAD}",
    ),
    "dtype": (
        "train_images",
        gz(images_raw(2, dtype_code=0x0D)),
        "IDX dtype code 0x0d is not unsigned byte (0x08). Fix: store pixels and labels as uint8 IDX, as the "
        "official files do",
    ),
    "image size": (
        "train_images",
        gz(images_raw(2, 32, 32)),
        "images are 32x32, expected 28x28. Fix: Fashion-MNIST images are 28x28 grayscale; resize your images to "
        "28x28 before ingest",
    ),
    "image width only": (
        "train_images",
        gz(images_raw(2, 28, 27)),
        "images are 28x27, expected 28x28. Fix: Fashion-MNIST images are 28x28 grayscale; resize your images to "
        "28x28 before ingest",
    ),
    "images given as labels": (
        "train_labels",
        gz(images_raw(2)),
        "has 3 dimensions, expected 1 for labels ([N]). Fix: check that images and labels files are not swapped "
        "or renamed",
    ),
    "labels given as images": (
        "test_images",
        gz(labels_raw([1, 2])),
        "has 1 dimensions, expected 3 for images ([N, 28, 28]). Fix: check that images and labels files are not "
        "swapped or renamed",
    ),
    "payload short": (
        "train_images",
        gz(images_raw(3)[:-5]),
        f"header declares shape [3, 28, 28] = 2,352 bytes but the file holds 2,347. Fix: {REDOWNLOAD}",
    ),
    "payload long": (
        "train_labels",
        gz(labels_raw([1, 2]) + b"\x01"),
        f"header declares shape [2] = 2 bytes but the file holds 3. Fix: {REDOWNLOAD}",
    ),
    "labels out of range": (
        "train_labels",
        gz(labels_raw([1, 12, 3, 255])),
        "2 labels are outside 0-9 (largest 255). Fix: labels must be class indices 0-9 (T-shirt/top ... Ankle "
        "boot); fix or drop those items",
    ),
    "label 10": (
        "test_labels",
        gz(labels_raw([9, 10, 0])),
        "1 labels are outside 0-9 (largest 10). Fix: labels must be class indices 0-9 (T-shirt/top ... Ankle "
        "boot); fix or drop those items",
    ),
    "zero items": ("train_labels", gz(labels_raw([])), "holds zero items. Fix: supply a file with at least one item"),
    "three header bytes": (
        "train_labels",
        gz(b"\x00\x00\x08"),
        f"only 3 bytes after decompression, too short for an IDX header. Fix: {REDOWNLOAD}",
    ),
    "header cut": (
        "train_images",
        gz(struct.pack(">BBBBII", 0, 0, 8, 3, 2, 28)),
        f"IDX header is truncated. Fix: {REDOWNLOAD}",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_broken_file_gets_exactly_its_message(case):
    role, data, message = CASES[case]
    with pytest.raises(idx.IdxError) as caught:
        idx.read_idx_file(role, data, name="/data/f.gz")
    assert str(caught.value) == f"/data/f.gz: {message}"
    assert caught.value.file == "/data/f.gz" and str(caught.value) == (
        f"{caught.value.file}: {caught.value.problem}. Fix: {caught.value.fix}"
    )


def test_the_default_name_in_a_message_is_the_official_file_name():
    with pytest.raises(idx.IdxError, match=r"^t10k-labels-idx1-ubyte\.gz: holds zero items"):
        idx.read_idx_file("test_labels", gz(labels_raw([])))


def test_the_smallest_valid_files_pass():
    assert idx.read_idx_file("train_labels", gz(labels_raw([9]))).array.tolist() == [9]  # label 9 is a class
    image = idx.read_idx_file("test_images", gz(images_raw(1))).array
    assert image.shape == (1, 28, 28) and image.dtype == np.uint8
    header = gz(labels_raw([0]))  # exactly a header and one item
    assert idx.read_idx_file("train_labels", header).size == len(header)


def test_the_recorded_hashes_are_of_the_compressed_and_the_decompressed_bytes():
    import hashlib

    raw = labels_raw([1, 2, 3])
    data = gz(raw)
    parsed = idx.read_idx_file("train_labels", data, name="x")
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.gz_md5 == hashlib.md5(data).hexdigest()
    assert parsed.content_md5 == hashlib.md5(raw).hexdigest()
    assert (parsed.role, parsed.name, parsed.size) == ("train_labels", "x", len(data))


def test_custom_data_gets_exactly_its_two_warnings(tmp_path):
    directory = make_idx_dir(tmp_path, n_train=20, n_test=10)
    blobs = {role: (directory / name).read_bytes() for role, name in idx.FILE_NAMES.items()}
    names = {role: f"src/{name}" for role, name in idx.FILE_NAMES.items()}
    files = idx.validate_set(blobs, names)
    assert files.warnings == [
        "not the published Fashion-MNIST files (checksums differ): "
        + ", ".join(f"src/{idx.FILE_NAMES[r]}" for r in idx.ROLES)
        + "; ingesting them as custom data",
        f"counts {{'train': 20, 'test': 10}} differ from the official {idx.OFFICIAL_COUNTS}",
    ]
    assert files.class_distribution() == {"train": [2] * 10, "test": [1] * 10}


def test_mismatched_counts_name_both_files_and_the_split(tmp_path):
    directory = make_idx_dir(tmp_path, n_train=20, n_test=10)
    blobs = {role: (directory / name).read_bytes() for role, name in idx.FILE_NAMES.items()}
    blobs["train_labels"] = gz(labels_raw([1] * 19))
    with pytest.raises(idx.IdxError) as caught:
        idx.validate_set(blobs)
    assert str(caught.value) == (
        "train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz: 20 images but 19 labels in the train split. "
        "Fix: supply an images file and a labels file of the same split and size"
    )


def test_four_bytes_are_a_magic_number_without_dimensions():
    with pytest.raises(idx.IdxError) as caught:
        idx.read_idx_file("train_labels", gz(b"\x00\x00\x08\x01"), name="f.gz")
    assert str(caught.value) == f"f.gz: IDX header is truncated. Fix: {REDOWNLOAD}"


def test_corrupt_gzip_data_is_named_with_the_fix():
    data = bytearray(gz(labels_raw(list(range(10)) * 10)))
    data[12] ^= 0xFF  # inside the deflate stream
    with pytest.raises(idx.IdxError) as caught:
        idx.read_idx_file("train_labels", bytes(data), name="f.gz")
    assert str(caught.value).startswith("f.gz: corrupt gzip data (")
    assert str(caught.value).endswith(f"). Fix: {REDOWNLOAD}")


def test_the_class_distribution_counts_every_class_even_absent_ones(tmp_path):
    directory = make_idx_dir(tmp_path, n_train=20, n_test=10)
    blobs = {role: (directory / name).read_bytes() for role, name in idx.FILE_NAMES.items()}
    blobs["test_labels"] = gz(labels_raw([0] * 10))  # no class 1-9 in the test split
    assert idx.validate_set(blobs).class_distribution()["test"] == [10] + [0] * 9
