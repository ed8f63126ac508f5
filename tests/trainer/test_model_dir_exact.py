"""trainer.models.model_dir exactly (issue 27's model-dir group): the files train writes and every reader's checks, on
a local directory and over the wire to fake-gcs-server, with a two-layer Keras model and an ONNX graph built here (a
real training is tests/trainer/test_train.py)."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

import storage
from trainer.errors import ModelDirError
from trainer.models import model_dir

INFO = {"run_id": "r-7", "config": {"epochs": 2}, "a_first_key": [1, 2]}  # not in sorted order


@pytest.fixture(scope="module")
def keras_model():
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    return model


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    """A linear softmax classifier on the service's input and output names; its logits are its first output, so a
    reader that takes the first output rather than the probabilities by name reads the logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from contracts.layout import INPUT_NAME, OUTPUT_NAME

    weights = np.random.default_rng(0).normal(0, 0.01, (784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", [INPUT_NAME], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [OUTPUT_NAME]),
        ],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, 28, 28])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 10]),
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 10]),
        ],
        [numpy_helper.from_array(weights, "w")],
    )
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, weights


def softmax_of(images: np.ndarray, weights: np.ndarray) -> np.ndarray:
    logits = images.reshape(len(images), 784).astype(np.float32) @ weights
    out = np.exp(logits - logits.max(1, keepdims=True))
    return out / out.sum(1, keepdims=True)


def test_save_writes_the_model_and_a_sorted_indented_record(tmp_path, keras_model):
    target = str(tmp_path / "model")
    model_dir.save(keras_model, target, INFO)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.keras", "training.json"]
    assert (tmp_path / "model" / "training.json").read_text() == json.dumps(INFO, indent=2, sort_keys=True)
    assert model_dir.read_training_info(target) == INFO

    images = np.random.default_rng(2).integers(0, 256, (3, 28, 28)).astype(np.float32)
    loaded = model_dir.load_keras_model(target)
    np.testing.assert_array_equal(loaded.predict_on_batch(images), keras_model.predict_on_batch(images))


def test_json_on_gcs_is_typed_as_json_and_its_uri_returned(gcs_bucket, keras_model):
    uri = model_dir.write_json(f"{gcs_bucket}/m/", "extra.json", {"b": 1, "a": 2}, sort_keys=True)
    assert uri == f"{gcs_bucket}/m/extra.json"
    assert storage.read_text(uri) == '{"a": 2, "b": 1}'
    model_dir.save(keras_model, f"{gcs_bucket}/run", INFO)
    bucket = storage.gcs_client().bucket(gcs_bucket[len("gs://") :])
    assert bucket.get_blob("m/extra.json").content_type == "application/json"
    assert bucket.get_blob("run/training.json").content_type == "application/json"
    assert storage.read_text(f"{gcs_bucket}/run/training.json") == json.dumps(INFO, indent=2, sort_keys=True)
    assert model_dir.read_training_info(f"{gcs_bucket}/run") == INFO


def test_a_directory_train_did_not_write_is_named_with_the_fix(tmp_path):
    with pytest.raises(ModelDirError) as caught:
        model_dir.read_training_info(str(tmp_path / "nothing"))
    uri = tmp_path / "nothing" / "training.json"
    assert str(caught.value) == (
        f"{uri} not found: {tmp_path / 'nothing'} is not a directory `python -m trainer train` wrote "
        "(it prints the model directory at the end)"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def write_files(root) -> dict[str, str]:
    (root / "sub").mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"onnx bytes")
    (root / "sub" / "labels.txt").write_bytes(b"t-shirt")
    (root / "XL.bin").write_bytes(b"x")  # a name starting with X: the key is the whole name
    return {
        "XL.bin": hashlib.sha256(b"x").hexdigest(),
        "model.onnx": hashlib.sha256(b"onnx bytes").hexdigest(),
        "sub/labels.txt": hashlib.sha256(b"t-shirt").hexdigest(),
    }


def test_digests_are_keyed_by_the_name_inside_the_directory(tmp_path, gcs_bucket):
    expected = write_files(tmp_path / "dir")
    (tmp_path / "dir2").mkdir()
    (tmp_path / "dir2" / "other").write_bytes(b"not mine")  # a sibling whose name starts like the directory's
    assert model_dir.file_digests(str(tmp_path / "dir")) == expected
    assert model_dir.file_digests(f"{tmp_path / 'dir'}/") == expected
    write_files(tmp_path / "runX")  # a directory name ending in X, given with a trailing slash
    assert model_dir.file_digests(f"{tmp_path / 'runX'}/") == expected
    for name, data in (("model.onnx", b"onnx bytes"), ("sub/labels.txt", b"t-shirt"), ("XL.bin", b"x")):
        storage.write_bytes(f"{gcs_bucket}/dir/{name}", data)
    storage.write_bytes(f"{gcs_bucket}/dir2/other", b"not mine")
    assert model_dir.file_digests(f"{gcs_bucket}/dir/") == expected
    assert model_dir.file_digests(f"{gcs_bucket}/dir//") == expected  # a prefix setting ending in / joined with /


def test_a_changed_or_missing_file_is_named_and_nothing_loaded(tmp_path):
    root = tmp_path / "dir"
    expected = write_files(root)
    model_dir.verify_digests(str(root), expected)  # the recorded bytes: no error
    model_dir.verify_digests(str(root), {})

    (root / "sub" / "labels.txt").write_bytes(b"shirt")
    changed = hashlib.sha256(b"shirt").hexdigest()
    with pytest.raises(ModelDirError) as caught:
        model_dir.verify_digests(str(root), expected)
    assert str(caught.value) == (
        f"{root / 'sub/labels.txt'} was changed or damaged: sha256 {changed}, recorded {expected['sub/labels.txt']}. "
        "Nothing was loaded; restore the file or register the model again"
    )

    (root / "model.onnx").unlink()  # the first name in order is reported first (XL.bin is intact)
    with pytest.raises(ModelDirError) as caught:
        model_dir.verify_digests(str(root), expected)
    assert str(caught.value) == f"{root / 'model.onnx'} is missing; its record expects sha256 {expected['model.onnx']}"


def test_onnx_probabilities_cover_every_image_in_batches(onnx_path):
    path, weights = onnx_path
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = softmax_of(images, weights)
    for batch_size in (2, 5, 1000):  # a last short batch, one exact batch, the default
        found = model_dir.onnx_probabilities(path, images, batch_size)
        assert found.shape == (5, 10) and found.dtype == np.float32
        np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-6)


def test_onnx_probabilities_run_on_the_threads_asked_for(onnx_path, monkeypatch):
    """quantize times both artifacts as a service worker runs them: on one thread."""
    path, weights = onnx_path
    images = np.random.default_rng(1).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    threads = []
    real = model_dir.onnx_session

    def recorded(path, **kwargs):
        session = real(path, **kwargs)
        threads.append(session.get_session_options().intra_op_num_threads)
        return session

    monkeypatch.setattr(model_dir, "onnx_session", recorded)
    found = model_dir.onnx_probabilities(path, images, threads=1)
    np.testing.assert_allclose(found, softmax_of(images, weights), rtol=1e-4, atol=1e-6)
    model_dir.onnx_probabilities(path, images)
    assert threads == [1, 0]


def test_a_service_workers_session_runs_on_one_cpu_thread(onnx_path):
    path, _ = onnx_path
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ONNX Runtime only warns of a provider name it does not know
        one = model_dir.onnx_session(path, threads=1)
    assert one.get_providers() == ["CPUExecutionProvider"]
    options = one.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    three = model_dir.onnx_session(path, threads=3).get_session_options()
    assert (three.intra_op_num_threads, three.inter_op_num_threads) == (3, 3)
    default = model_dir.onnx_session(path).get_session_options()  # ONNX Runtime's own choice: 0 means "decide"
    assert (default.intra_op_num_threads, default.inter_op_num_threads) == (0, 0)


def test_keras_probabilities_are_the_models_silently(keras_model, capsys):
    images = np.random.default_rng(4).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    found = model_dir.predict_probabilities(keras_model, images, batch_size=2)
    assert found.shape == (3, 10) and isinstance(found, np.ndarray)
    np.testing.assert_allclose(found, keras_model.predict_on_batch(images.astype("float32")), rtol=1e-5, atol=1e-7)
    assert capsys.readouterr().out == ""  # no progress bar in every caller's output


def batch_echo():
    """A Keras model whose every output row is the size of the batch it came in: the batches predict was run with."""
    import keras

    class Echo(keras.Model):
        def call(self, x):
            return keras.ops.zeros((keras.ops.shape(x)[0], 10)) + keras.ops.cast(keras.ops.shape(x)[0], "float32")

    return Echo()


def test_keras_probabilities_run_in_batches_of_1000_by_default():
    """1,000 divides the 10k test set: one batch shape, one compilation of the predict step."""
    model = batch_echo()
    sizes = model_dir.predict_probabilities(model, np.zeros((1001, 2), np.uint8))[:, 0]
    assert sizes.tolist() == [1000.0] * 1000 + [1.0]
    assert model_dir.predict_probabilities(model, np.zeros((5, 2)), batch_size=2)[:, 0].tolist() == [2, 2, 2, 2, 1]
