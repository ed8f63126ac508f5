"""The ONNX Runtime wrapper: chunked batches give the same answers, and warm-up rejects what is not a classifier."""

import numpy as np
import pytest

from service.runtime import CHUNK, ModelRuntimeError, OnnxClassifier
from tests.service.model_factory import generated_images


def test_large_batches_run_in_chunks_with_identical_results(model_dir):
    classifier = OnnxClassifier(str(model_dir / "model.onnx"), "pixels")
    classifier.warm_up()
    images, _ = generated_images(2 * CHUNK + 5, seed=51)
    pixels = images.astype(np.float32)
    together = classifier.predict(pixels)
    one_by_one = np.concatenate([classifier.predict(pixels[i : i + 1]) for i in range(len(pixels))])
    assert together.shape == (2 * CHUNK + 5, 10)
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)


def test_wrong_input_name_is_explained(model_dir):
    with pytest.raises(ModelRuntimeError, match=r"no input named 'image'.*\['pixels'\]"):
        OnnxClassifier(str(model_dir / "model.onnx"), "image")


def _graph_without_softmax(path):
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.full(784 * 10, 0.01, np.float32).tolist())
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["pixels", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "no_softmax",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])],
        [weights, shape],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_warm_up_rejects_outputs_that_are_not_probabilities(tmp_path):
    classifier = OnnxClassifier(str(_graph_without_softmax(tmp_path / "m.onnx")), "pixels")
    with pytest.raises(ModelRuntimeError, match="do not sum to 1"):
        classifier.warm_up()
