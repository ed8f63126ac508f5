"""IDX parsing and validation: every rule rejects its broken input with a message naming file, problem and fix."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_idx_dir, write_idx
from trainer.data import idx

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def blobs_of(directory: Path) -> dict[str, bytes]:
    return {role: (directory / idx.FILE_NAMES[role]).read_bytes() for role in idx.ROLES}


def gz(raw: bytes) -> bytes:
    # mtime=0: the bytes are test ids below; with the clock in the gzip header, two xdist workers collecting a
    # second apart saw different tests and the run stopped ("Different tests were collected")
    return gzip.compress(raw, compresslevel=1, mtime=0)


def test_valid_generated_set_passes_as_custom_data(tmp_path):
    files = idx.validate_set(blobs_of(make_idx_dir(tmp_path, n_train=50, n_test=20)))
    assert files.counts() == {"train": 50, "test": 20}
    assert files.class_distribution()["train"] == [5] * 10
    assert files.files["train_images"].array.shape == (50, 28, 28)
    assert files.files["train_images"].array.dtype == np.uint8
    assert not files.official
    assert any("not the published" in w for w in files.warnings)
    assert any("differ from the official" in w for w in files.warnings)


def test_version_is_sha256_over_file_sha256s_in_role_order(tmp_path):
    blobs = blobs_of(make_idx_dir(tmp_path, n_train=20, n_test=10))
    files = idx.validate_set(blobs)
    digests = "".join(hashlib.sha256(blobs[r]).hexdigest() for r in idx.ROLES)
    assert files.dataset_hash == hashlib.sha256(digests.encode()).hexdigest()
    assert files.version == "v-" + files.dataset_hash[:12]


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_real_debian_files_match_the_published_checksums():
    files = idx.validate_set(blobs_of(DEBIAN_DIR))
    assert files.official and files.warnings == []
    assert files.counts() == idx.OFFICIAL_COUNTS
    assert files.class_distribution() == {"train": [6000] * 10, "test": [1000] * 10}


def test_multi_member_gzip_is_accepted():
    raw = struct.pack(">II", 0x0801, 4) + bytes([1, 2, 3, 4])
    data = gz(raw[:6]) + gz(raw[6:])
    assert idx.read_idx_file("train_labels", data).array.tolist() == [1, 2, 3, 4]


def _labels_raw(values, magic=0x0801):
    return struct.pack(">II", magic, len(values)) + bytes(values)


def _images_raw(n, h=28, w=28, dtype_code=0x08):
    return struct.pack(">BBBBIII", 0, 0, dtype_code, 3, n, h, w) + bytes(n * h * w)


@pytest.mark.parametrize(
    "role,data,problem",
    [
        ("train_labels", gz(_labels_raw([1, 2, 3]))[:-9], "truncated gzip"),
        ("train_labels", b"PK\x03\x04 zip", "not a gzip file"),
        ("train_labels", gz(_labels_raw([1, 2, 3])) + b"junk", "trailing garbage"),
        ("train_labels", gz(_labels_raw([1, 2, 3], magic=0x12340801)), "wrong IDX magic"),
        ("train_images", gz(_images_raw(2, dtype_code=0x0D)), "is not unsigned byte"),
        ("train_images", gz(_images_raw(2, 32, 32)), "images are 32x32, expected 28x28"),
        ("train_labels", gz(_images_raw(2)), "has 3 dimensions, expected 1"),
        ("train_images", gz(_images_raw(3)[:-5]), "header declares shape [3, 28, 28]"),
        ("train_labels", gz(_labels_raw([1, 12, 3, 255])), "2 labels are outside 0-9 (largest 255)"),
        ("train_labels", gz(_labels_raw([])), "zero items"),
    ],
)
def test_broken_file_raises_one_error_naming_file_problem_and_fix(role, data, problem):
    with pytest.raises(idx.IdxError) as caught:
        idx.read_idx_file(role, data, name="/data/some-file.gz")
    message = str(caught.value)
    assert message.startswith("/data/some-file.gz: ")
    assert problem in message
    assert "Fix: " in message


def test_corrupt_gzip_crc_is_rejected():
    data = bytearray(gz(_labels_raw(list(range(10)) * 10)))
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    with pytest.raises(idx.IdxError, match="corrupt gzip data"):
        idx.read_idx_file("train_labels", bytes(data))


def test_image_and_label_counts_must_agree(tmp_path):
    directory = make_idx_dir(tmp_path, n_train=30, n_test=10)
    write_idx(directory / idx.FILE_NAMES["test_labels"], np.zeros(9, dtype=np.uint8))
    with pytest.raises(idx.IdxError, match=r"10 images but 9 labels in the test split") as caught:
        idx.validate_set(blobs_of(directory))
    assert "t10k-images-idx3-ubyte.gz + t10k-labels-idx1-ubyte.gz" in str(caught.value)
