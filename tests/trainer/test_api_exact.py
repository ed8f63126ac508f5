"""trainer.api exactly (issue 27's trainer-api group): what each door passes to the trainer function behind it, with
the real function where it is cheap (an ONNX graph built here, the local index signer) and a recording stand-in for
training (a real training is tests/trainer/test_train*.py and `make demo`)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from tests.service.model_factory import linear_softmax_onnx
from trainer import api
from trainer.training import train as training


def test_a_broken_gzip_file_is_named():
    with pytest.raises(api.IdxError, match=r"images\.gz"):
        api.decode_idx_images(b"\x1f\x8b" + b"not gzip data", "images.gz")


def test_gzip_is_told_by_its_two_magic_bytes_not_one():
    header = b"\x1f\x00" + struct.pack(">HII", 0x803, 1, 28)  # an IDX-like file starting with 0x1f, not gzip
    with pytest.raises(api.IdxError, match="odd.idx") as caught:
        api.decode_idx_images(header, "odd.idx")
    assert "gzip" not in str(caught.value).lower()
    images = np.arange(784, dtype=np.uint8).reshape(1, 28, 28)
    raw = struct.pack(">IIII", 0x803, 1, 28, 28) + images.tobytes()
    assert api.decode_idx_images(gzip.compress(raw), "x.gz").shape == (1, 28, 28)


def test_a_preset_is_trained_on_the_dataset_into_the_dev_bucket(settings, monkeypatch):
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: calls.append((args, kwargs)) or "result")
    x_train, y_train, x_test, y_test = (np.zeros((n, 28, 28), np.uint8) for n in (4, 4, 2, 2))
    dataset = type("Dataset", (), {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test})()
    dataset.version, dataset.hash = "v7", "sha256:abc"

    assert api.train_preset(settings, dataset, "demo") == "result"
    assert api.train_preset(settings, dataset, "full", fresh=False, verbose=0) == "result"
    [(args, kwargs), (_, kwargs_given)] = calls
    assert [id(a) for a in args[:4]] == [id(x_train), id(y_train), id(x_test), id(y_test)]
    assert args[4] is training.PRESETS["demo"] and calls[1][0][4] is training.PRESETS["full"]
    assert args[5] == training.OutputPaths(root=settings.dev_bucket)
    assert kwargs == {"dataset": {"version": "v7", "hash": "sha256:abc"}, "fresh": True, "verbose": 2}
    assert kwargs_given == {"dataset": {"version": "v7", "hash": "sha256:abc"}, "fresh": False, "verbose": 0}


def test_onnx_probabilities_run_the_artifact_on_the_images(tmp_path):
    weights = np.random.default_rng(0).normal(0, 0.01, (784, 10)).astype(np.float32)
    path = tmp_path / "model.onnx"
    path.write_bytes(linear_softmax_onnx(weights))
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    logits = images.reshape(3, 784).astype(np.float32) @ weights
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(api.onnx_probabilities(path, images), expected, rtol=1e-4, atol=1e-6)


def test_a_local_service_gets_the_registrys_public_key(settings):
    from trainer.models.index_signing import LocalKeySigner, local_key_dir

    pem = LocalKeySigner(local_key_dir(settings)).public_key_pem().decode()
    assert api.index_key_environment(settings) == {"INDEX_PUBLIC_KEY": pem}
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
