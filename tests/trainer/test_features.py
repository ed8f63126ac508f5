"""`trainer features`: the Parquet feature table of a dataset version, its schema and its rows."""

import argparse
import io

import numpy as np
import pyarrow.parquet as pq

import storage
from contracts.features import compute_image_features
from trainer.data import features, ingest
from trainer.data.dataset import Dataset, load_dataset, version_uri


def test_features_command_writes_parquet_with_the_schema(settings, idx_dir):
    version = ingest.ingest(settings, ingest.Source("directory", str(idx_dir)))
    assert features.run(argparse.Namespace(version=None), settings) == 0
    data = storage.read_bytes(storage.join(version_uri(settings, version), features.FEATURES_FILE))
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.equals(features.arrow_schema(version), check_metadata=True)
    assert table.num_rows == 800
    ids = table["image_id"].to_pylist()
    assert ids[0] == "train-00000" and ids[-1] == "test-00199" and len(set(ids)) == 800
    dataset: Dataset = load_dataset(settings)
    np.testing.assert_array_equal(table["label"].to_numpy()[:600], dataset.y_train)
    expected = compute_image_features(dataset.x_test)["ink_fraction"]
    np.testing.assert_array_equal(table["ink_fraction"].to_numpy()[600:], expected.astype(np.float64))
    assert set(table["dataset_version"].to_pylist()) == {version}
