"""A local target prepared as `make demo` leaves it, on small generated data: an ingested, analysed dataset with
its feature table, and a champion trained, exported, verified and promoted by the trainer's own functions."""

from __future__ import annotations

import argparse
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

from settings import load_config
from tests.conftest import make_idx_dir

N_TRAIN, N_TEST = 1000, 300


@dataclass
class ExploredWorld:
    root: Path  # FMNIST_STORAGE_ROOT
    settings: object
    dataset_version: str
    champion: str

    @property
    def environ(self) -> dict[str, str]:
        return {"FMNIST_ENV": "local", "FMNIST_STORAGE_ROOT": str(self.root)}


def prepare_world(root: Path, idx_dir: Path) -> ExploredWorld:
    from trainer.data import analyze, features
    from trainer.data.dataset import load_dataset
    from trainer.data.ingest import Source, ingest
    from trainer.models.export import export_model_dir
    from trainer.models.registry import ModelRegistry
    from trainer.training.train import PRESETS, OutputPaths, train

    settings = load_config(
        "local", environ={"FMNIST_STORAGE_ROOT": str(root), "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3"}
    )
    version = ingest(settings, Source("directory", str(make_idx_dir(idx_dir, N_TRAIN, N_TEST))))
    args = argparse.Namespace(version=version)
    assert analyze.run(args, settings) == 0 and features.run(args, settings) == 0
    dataset = load_dataset(settings, version)
    # One epoch and another seed than the notebook's smoke run: the two models must have something to disagree on.
    config = dataclasses.replace(PRESETS["smoke"], epochs=1, seed=7)
    result = train(
        dataset.x_train,
        dataset.y_train,
        dataset.x_test,
        dataset.y_test,
        config,
        OutputPaths(root=settings.dev_bucket),
        dataset={"version": version, "hash": dataset.hash},
        verbose=0,
    )
    export_model_dir(settings, result.model_dir)
    champion, _ = ModelRegistry.from_settings(settings).promote()
    return ExploredWorld(root, settings, version, champion)


@pytest.fixture(scope="session")
def explored_world(tmp_path_factory) -> ExploredWorld:
    base = tmp_path_factory.mktemp("explored")
    return prepare_world(base / "mlops", base / "idx")


@pytest.fixture
def no_google_credentials(monkeypatch, tmp_path):
    """No key file, no reachable metadata server, and a PATH with only what the test puts there."""
    from google.auth.compute_engine import _metadata

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    # google-auth's own ping of the refused port, once: its default three tries sleep 1 s and 2 s between them
    monkeypatch.setattr(_metadata, "ping", functools.partial(_metadata.ping, retry_count=1))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir
