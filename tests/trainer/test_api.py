"""trainer.api, the lifecycle's door into the trainer: each function does what the module it fronts does."""

import gzip
import struct

import numpy as np
import pytest

from trainer import api


def _idx(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, len(images), 28, 28) + images.tobytes()


def test_idx_images_read_alike_gzipped_or_not_and_a_bad_file_is_named():
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    assert np.array_equal(api.decode_idx_images(_idx(images), "raw"), images)
    assert np.array_equal(api.decode_idx_images(gzip.compress(_idx(images)), "images.gz"), images)
    with pytest.raises(api.IdxError, match="broken.idx"):
        api.decode_idx_images(b"not an idx file", "broken.idx")


def test_the_batch_job_is_built_and_sent_by_the_cloud_adapter(monkeypatch):
    from trainer.cloud import batch_prediction

    calls = []
    monkeypatch.setattr(batch_prediction, "build_for_source", lambda *a: calls.append(("build", a)) or "request")
    monkeypatch.setattr(batch_prediction, "send", lambda *a: calls.append(("send", a)) or "job")
    assert api.batch_prediction_request("settings", "gs://b/png/", "champion", "gs://b/out/") == "request"
    assert api.send_batch_prediction("settings", "request") == "job"
    assert calls == [
        ("build", ("settings", "gs://b/png/", "champion", "gs://b/out/")),
        ("send", ("settings", "request")),
    ]
