"""The data set every unit handles: Fashion-MNIST's classes, image shape and the four IDX files."""

from __future__ import annotations

DATASET_NAME = "fashion-mnist"
CLASS_NAMES: tuple[str, ...] = (
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
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)
PIXELS_PER_IMAGE = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]

# The four files of a dataset, by role. Order matters: it defines the dataset hash (docs/CONTRACTS.md).
IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
IDX_FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
OFFICIAL_COUNTS = {"train": 60_000, "test": 10_000}
