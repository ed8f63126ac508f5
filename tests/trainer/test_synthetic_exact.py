"""The generated IDX data (trainer/data/synthetic.py) byte by byte and pixel by pixel: the tests, the benches and
anyone trying a command without the real data set read these files, so a wrong header, band or seed is a bug."""

from __future__ import annotations

import gzip
import struct

import numpy as np

from contracts.dataset import IDX_FILE_NAMES
from trainer.data.synthetic import make_idx_dir, make_images, write_idx


def test_an_idx_file_is_the_gzipped_big_endian_header_then_the_bytes(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) + 200  # int64: stored as one byte a value
    path = write_idx(tmp_path / "x.gz", array)
    assert path == tmp_path / "x.gz"
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[8] == 4  # gzip, written at the fastest level (XFL 4: compresslevel 1)
    assert gzip.decompress(raw) == b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + array.astype(np.uint8).tobytes()


def test_the_magic_holds_the_number_of_dimensions(tmp_path):
    data = gzip.decompress(write_idx(tmp_path / "y.gz", np.array([7, 0, 9])).read_bytes())
    assert data == b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x00\x09"  # a labels file
    data = gzip.decompress(write_idx(tmp_path / "m.gz", np.array([[1, 2]])).read_bytes())
    assert data == b"\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00\x00\x02\x01\x02"  # 0x0800 | 2: no other bit


def expected_images(labels, seed):
    """The generator's rule, written out: uniform noise 0-39, a bright band of 4 rows (cols 3-24) and a dimmer
    column (rows 4-23), both at 2 + 2 x label, clipped to 255."""
    noise = np.random.default_rng(seed).integers(0, 40, size=(len(labels), 28, 28), dtype=np.int32)
    for i, label in enumerate(labels):
        noise[i, 2 + 2 * label : 6 + 2 * label, 3:25] += 180
        noise[i, 4:24, 2 + 2 * label] += 60
    return np.clip(noise, 0, 255).astype(np.uint8)


def test_images_are_noise_plus_a_band_and_a_column_where_the_label_says():
    labels = np.array([0, 9, 4, 4, 1], np.uint8)
    images = make_images(labels, seed=3)
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    np.testing.assert_array_equal(images, expected_images(labels, 3))
    last = images[1]  # label 9: band on rows 20-23, column 20
    assert last[20:24, 3:25].min() >= 180 and last[19, 3:25].max() < 100 and last[24, 3:25].max() < 100
    assert last[4:20, 20].min() >= 60 and last[:2, 20].max() < 40 and last[24:, 20].max() < 40
    assert last[20:24, 20].max() == 255  # band and column overlap: 180 + 60 + noise, clipped


def test_the_noise_spans_zero_to_thirty_nine_and_follows_the_seed():
    labels = np.zeros(50, np.uint8)
    images = make_images(labels)
    background = images[:, 24:, :]  # below the band and the column
    assert (background.min(), background.max()) == (0, 39)
    np.testing.assert_array_equal(images, make_images(labels, seed=0))
    assert not np.array_equal(images, make_images(labels, seed=1))


def test_a_data_directory_holds_the_four_official_names_with_balanced_labels(tmp_path):
    directory = make_idx_dir(tmp_path / "new" / "idx", n_train=30, n_test=20, seed=5)
    assert directory == tmp_path / "new" / "idx"
    assert sorted(p.name for p in directory.iterdir()) == sorted(IDX_FILE_NAMES.values())

    def read(role):
        data = gzip.decompress((directory / IDX_FILE_NAMES[role]).read_bytes())
        ndim = data[3]
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        return np.frombuffer(data[4 + 4 * ndim :], np.uint8).reshape(shape)

    y_train, y_test = read("train_labels"), read("test_labels")
    np.testing.assert_array_equal(y_train, np.arange(30) % 10)
    np.testing.assert_array_equal(y_test, np.arange(20) % 10)
    np.testing.assert_array_equal(read("train_images"), expected_images(y_train, 5))
    np.testing.assert_array_equal(read("test_images"), expected_images(y_test, 6))  # the test split's own seed


def test_default_sizes_are_six_hundred_and_two_hundred(tmp_path):
    directory = make_idx_dir(tmp_path)
    for role, count in (("train_labels", 600), ("test_labels", 200)):
        header = gzip.decompress((directory / IDX_FILE_NAMES[role]).read_bytes())[:8]
        assert header == b"\x00\x00\x08\x01" + struct.pack(">I", count)
    first_train = gzip.decompress((directory / IDX_FILE_NAMES["train_images"]).read_bytes())[16 : 16 + 784]
    assert first_train == expected_images(np.zeros(1, np.int64), 0).tobytes()  # seed 0 by default
