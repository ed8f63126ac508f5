"""The int8 artifact exactly: the gate's limits and its report, the calibration sample and batches, and the options
quantization runs with, checked on a tiny hand-built ONNX classifier (no TensorFlow: seconds, not a training run).
Found unpinned by `make mutate`."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from contracts.layout import INPUT_NAME, OUTPUT_NAME
from trainer.models import quantize
from trainer.models.quantize import QuantizationCheck


def test_the_gate_limits_and_the_calibration_size_are_the_documented_ones():
    assert (quantize.MIN_AGREEMENT, quantize.MAX_ACCURACY_LOSS) == (0.995, 0.002)
    assert (quantize.CALIBRATION_IMAGES, quantize.CALIBRATION_BATCH) == (512, 64)


def test_the_report_states_the_figures_the_limits_and_the_decision():
    check = QuantizationCheck(images=4, agreement=0.75, float_accuracy=0.75, int8_accuracy=0.5)
    assert check.to_dict() == {
        "images": 4,
        "agreement": 0.75,
        "float_accuracy": 0.75,
        "int8_accuracy": 0.5,
        "accuracy_loss": 0.25,
        "min_agreement": 0.995,
        "max_accuracy_loss": 0.002,
        "passed": False,
    }
    assert QuantizationCheck(10, 1.0, 0.9, 0.9).to_dict()["passed"] is True


def test_the_calibration_sample_is_512_training_images_in_their_order_from_seed_0():
    images = np.arange(1000, dtype=np.uint8).repeat(4).reshape(1000, 2, 2)
    sample = quantize.calibration_sample(images)
    picked = np.sort(np.random.default_rng(0).permutation(1000)[:512])
    assert sample.shape == (512, 2, 2) and sample.dtype == np.float32
    np.testing.assert_array_equal(sample[:, 0, 0], picked.astype(np.float32) % 256)
    assert not np.array_equal(quantize.calibration_sample(images, seed=1), sample)


def test_the_calibration_reader_gives_batches_of_64_then_none():
    reader = quantize._Batches(np.zeros((130, 28, 28), dtype=np.float32))
    sizes = []
    while (batch := reader.get_next()) is not None:
        assert list(batch) == [INPUT_NAME]
        sizes.append(len(batch[INPUT_NAME]))
    assert sizes == [64, 64, 2] and reader.get_next() is None


def _tiny_classifier(path):
    """pixels [N, 28, 28] -> Conv 3x3 (4 channels) -> ReLU -> flatten -> MatMul (10) -> Softmax: the exported
    model's shape in miniature, with fixed random weights."""
    rng = np.random.default_rng(3)
    weights = {
        "shape": np.array([-1, 1, 28, 28], dtype=np.int64),
        "flat": np.array([-1, 4 * 26 * 26], dtype=np.int64),
        "kernel": rng.normal(0, 0.05, (4, 1, 3, 3)).astype(np.float32),
        "dense": rng.normal(0, 0.01, (4 * 26 * 26, 10)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Reshape", [INPUT_NAME, "shape"], ["image"]),
        helper.make_node("Conv", ["image", "kernel"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Reshape", ["relu", "flat"], ["features"]),
        helper.make_node("MatMul", ["features", "dense"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", 28, 28])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def images():
    return np.random.default_rng(5).integers(0, 256, (600, 28, 28)).astype(np.float32)


def test_static_per_channel_int8_weights_uint8_activations_and_a_float_softmax(tmp_path, images):
    out = quantize.quantize(_tiny_classifier(tmp_path / "f.onnx"), images[:128], tmp_path / "q.onnx")
    graph = onnx.load(str(out)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dequantized = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    kernel = next(n for n in dequantized if n.output[0].startswith("kernel"))
    assert initializers[kernel.input[0]].dtype == np.int8  # weights: int8
    assert initializers[kernel.input[1]].shape == (4,)  # one scale per output channel
    activations = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert activations and {initializers[n.input[2]].dtype for n in activations} == {np.dtype(np.uint8)}
    softmax = next(n for n in graph.node if n.op_type == "Softmax")
    assert not [n for n in graph.node if n.op_type == "QuantizeLinear" and softmax.output[0] in n.input]
    producer = next(n for n in graph.node if softmax.input[0] in n.output)
    assert producer.op_type == "DequantizeLinear" and OUTPUT_NAME in softmax.output


def test_calibration_is_minmax_over_the_sample(tmp_path, images, monkeypatch):
    """MinMax: the input's quantization range covers the calibration images' full 0..255 range."""
    import onnxruntime.quantization as ortq

    seen = {}
    real = ortq.quantize_static

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ortq, "quantize_static", spy)
    out = quantize.quantize(_tiny_classifier(tmp_path / "f.onnx"), images[:128], tmp_path / "q.onnx")
    assert seen["calibrate_method"] == ortq.CalibrationMethod.MinMax and seen["quant_format"] == ortq.QuantFormat.QDQ
    graph = onnx.load(str(out)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    first = next(n for n in graph.node if n.op_type == "QuantizeLinear" and "image" in n.input)  # the conv's input
    assert (float(initializers[first.input[1]]), int(initializers[first.input[2]])) == (1.0, 0)  # 0..255 in 256 steps


def test_quantize_and_check_calibrates_on_training_images_and_judges_on_the_test_set(tmp_path, images, monkeypatch):
    calibrated = []
    real = quantize.quantize

    def spy(float_path, calibration, out_path):
        calibrated.append(calibration.shape)
        return real(float_path, calibration, out_path)

    monkeypatch.setattr(quantize, "quantize", spy)
    float_path = _tiny_classifier(tmp_path / "f.onnx")
    from trainer.models.model_dir import onnx_probabilities

    x_test, float_p = images[:50], onnx_probabilities(float_path, images[:50])
    labels = float_p.argmax(axis=1)
    result = quantize.quantize_and_check(float_path, tmp_path / "q.onnx", images, x_test, labels, float_p)
    assert calibrated == [(512, 28, 28)]
    assert result.images == 50 and result.float_accuracy == 1.0
    assert (tmp_path / "q.onnx").is_file() and result.agreement >= 0.9
    assert result.int8_accuracy == result.agreement  # labels are the float model's own answers


def test_throughput_is_the_median_cpu_time_of_alternating_single_thread_runs(tmp_path, images, monkeypatch):
    """measure_throughput on the tiny classifier with the CPU clock replaced: 3 warm-up runs each, then `rounds`
    alternating float/int8 runs of the first 64 images (the dataset's uint8 pixels) as contiguous float32, images/s
    from each one's median."""
    import onnxruntime as ort

    float_path = _tiny_classifier(tmp_path / "f.onnx")
    int8_path = quantize.quantize(float_path, images[:128], tmp_path / "q.onnx")
    runs: list[tuple[str, tuple, np.dtype, bool]] = []
    opened = []
    real_session = ort.InferenceSession

    class Recorded(real_session):
        def __init__(self, path, options, providers):
            super().__init__(path, options, providers=providers)
            opened.append((path, options.intra_op_num_threads, options.inter_op_num_threads, tuple(providers)))
            self.label = "int8" if path == str(int8_path) else "float"

        def run(self, names, feed):
            (batch,) = feed.values()
            runs.append((self.label, batch.shape, batch.dtype, batch.flags["C_CONTIGUOUS"]))
            return super().run(names, feed)

    monkeypatch.setattr(ort, "InferenceSession", Recorded)
    # each timed run of float costs 4 ms of CPU, of int8 2 ms, except one slow outlier of each (the median drops it)
    costs = iter([0.004, 0.002, 0.004, 0.002, 0.5, 0.3, 0.004, 0.002, 0.004, 0.002])
    clock = {"now": 0.0, "started": True}

    def process_time():
        if clock["started"]:
            clock["started"] = False
            return clock["now"]
        clock["now"] += next(costs)
        clock["started"] = True
        return clock["now"]

    monkeypatch.setattr(quantize.time, "process_time", process_time)
    # the dataset's uint8 pixels, not contiguous: timed as the float32 batch a worker feeds the session
    pixels = images.astype(np.uint8)[:100, ::-1]
    float_speed, int8_speed = quantize.measure_throughput(float_path, int8_path, pixels, rounds=5)
    assert (float_speed, int8_speed) == pytest.approx((64 / 0.004, 64 / 0.002))
    assert [r[0] for r in runs] == ["float"] * 3 + ["int8"] * 3 + ["float", "int8"] * 5
    assert {r[1:] for r in runs} == {((64, 28, 28), np.dtype(np.float32), True)}
    assert [o[0] for o in opened] == [str(float_path), str(int8_path)]
    assert {o[1:] for o in opened} == {(1, 1, ("CPUExecutionProvider",))}  # one thread, as a service worker
    assert quantize.SPEED_ROUNDS == 25


def test_a_batch_smaller_than_64_is_timed_as_it_is():
    record = quantize.compare_speed(
        Path("f"), Path("q"), np.zeros((10, 28, 28), np.float32), throughput=lambda *_: (1.0, 2.0)
    )
    assert record.batch == 10


def test_quantization_leaves_nothing_in_the_working_directory_and_judges_on_one_thread(tmp_path, images, monkeypatch):
    """The prepared model lives in a temporary folder (export runs in the user's or the job's working directory),
    and the int8 model is judged as a service worker runs it: one thread."""
    import onnxruntime as ort

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    float_path = _tiny_classifier(tmp_path / "f.onnx")
    int8_path = tmp_path / "q.onnx"
    threads: dict[str, set[int]] = {}
    real_session = ort.InferenceSession

    class Recorded(real_session):
        def __init__(self, path, *args, **kwargs):
            super().__init__(path, *args, **kwargs)
            options = kwargs.get("sess_options", args[0] if args else None)
            threads.setdefault(str(path), set()).add(getattr(options, "intra_op_num_threads", 0))

    monkeypatch.setattr(ort, "InferenceSession", Recorded)
    from trainer.models.model_dir import onnx_probabilities

    float_p = onnx_probabilities(float_path, images[:20])
    result = quantize.quantize_and_check(float_path, int8_path, images, images[:20], float_p.argmax(axis=1), float_p)
    assert list(work.iterdir()) == []
    assert threads[str(int8_path)] == {1} and result.images == 20
