"""The bucket layout and the data set's facts by exact value: the paths the trainer writes and the service reads,
the references `<models root>@<alias>`, the four IDX files and the class names every report prints."""

from __future__ import annotations

import pytest

from contracts import dataset, layout


def test_the_default_alias_is_the_champion_and_the_reference_is_root_at_alias():
    assert layout.model_reference("gs://p-models") == "gs://p-models@champion"
    assert layout.model_reference("gs://p-models", "candidate") == "gs://p-models@candidate"


@pytest.mark.parametrize(
    "uri, parsed",
    [
        # the last '@' splits: a root may hold one (a local path), an alias may not
        ("a@b@champion", ("a@b", "champion")),
        ("gs://p-models@v-1.2_rc-3", ("gs://p-models", "v-1.2_rc-3")),
        ("gs://p-models@cham/pion", None),
        ("gs://p-models@champion ", None),
        ("gs://p-models@champion\n", None),
        ("", None),
        ("@", None),
    ],
)
def test_a_reference_splits_at_its_last_at_sign_and_takes_only_plain_aliases(uri, parsed):
    assert layout.parse_model_reference(uri) == parsed


def test_a_version_directory_is_under_the_registrys_versions():
    assert layout.version_dir("v-0123456789ab") == "registry/versions/v-0123456789ab"


def test_the_paths_and_file_names_every_unit_shares():
    assert (layout.DATASET_DIR, layout.LATEST_FILE, layout.MANIFEST_FILE) == (
        "fashion-mnist",
        "LATEST",
        "manifest.json",
    )
    assert (layout.FEATURES_FILE, layout.RAW_COMMIT_MARKER) == ("features.parquet", "_COMMIT")
    assert (layout.REGISTRY_INDEX, layout.REGISTRY_VERSIONS) == ("registry/index.json", "registry/versions")
    assert (layout.CHAMPION, layout.CANDIDATE) == ("champion", "candidate")
    assert layout.BUCKET_KINDS == ("dev", "datasets", "models") and layout.DEFAULT_STORAGE_ROOT == ".mlops"
    files = layout.ModelFiles
    assert (files.KERAS, files.TRAINING, files.ONNX, files.ONNX_INT8, files.METADATA) == (
        "model.keras",
        "training.json",
        "model.onnx",
        "model.int8.onnx",
        "metadata.json",
    )
    assert (files.SAMPLES, files.EVALUATION, files.CONFUSION_JSON, files.CONFUSION_PNG) == (
        "samples.npz",
        "evaluation.json",
        "confusion_matrix.json",
        "confusion_matrix.png",
    )
    assert (layout.INPUT_NAME, layout.OUTPUT_NAME) == ("pixels", "probabilities")


def test_the_data_sets_classes_shape_and_files():
    assert dataset.DATASET_NAME == "fashion-mnist"
    assert dataset.CLASS_NAMES == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    assert (dataset.NUM_CLASSES, dataset.IMAGE_SHAPE, dataset.PIXELS_PER_IMAGE) == (10, (28, 28), 784)
    # the order defines the dataset hash
    assert dataset.IDX_ROLES == ("train_images", "train_labels", "test_images", "test_labels")
    assert [dataset.IDX_FILE_NAMES[role] for role in dataset.IDX_ROLES] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert dataset.OFFICIAL_COUNTS == {"train": 60_000, "test": 10_000}
