"""Fixtures for the model-lifecycle tests: one small ingested dataset and one smoke-trained model per session.

Why session scope: TensorFlow start-up and even a tiny training cost seconds on 2 cores; evaluate, export and
registry tests only read the trained model, or copy it before they change anything.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from settings import load_config
from tests.conftest import make_idx_dir

N_TRAIN, N_TEST = 1200, 300


@dataclass
class TrainerWorld:
    root: Path  # FMNIST_STORAGE_ROOT
    settings: object
    dataset_version: str

    @property
    def environ(self) -> dict:
        return {"FMNIST_ENV": "local", "FMNIST_STORAGE_ROOT": str(self.root)}


def make_world(root: Path, idx_dir: Path) -> TrainerWorld:
    from trainer.data.ingest import Source, ingest

    settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": str(root)})
    version = ingest(settings, Source("directory", str(make_idx_dir(idx_dir, N_TRAIN, N_TEST))))
    return TrainerWorld(root, settings, version)


@pytest.fixture(scope="session")
def trainer_world(tmp_path_factory) -> TrainerWorld:
    """A local target with one tiny dataset version ingested (read-only for tests: copy before changing)."""
    base = tmp_path_factory.mktemp("trainer-world")
    return make_world(base / "mlops", base / "idx")


@pytest.fixture
def world(tmp_path, trainer_world) -> TrainerWorld:
    """A private copy of the session world, free to change."""
    root = tmp_path / "mlops"
    shutil.copytree(trainer_world.root, root)
    settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": str(root)})
    return TrainerWorld(root, settings, trainer_world.dataset_version)


@pytest.fixture(scope="session")
def smoke_model(trainer_world, tmp_path_factory):
    """A smoke-preset model trained in-process on the session dataset: (model_dir, TrainResult)."""
    from trainer.data.dataset import load_dataset
    from trainer.training.train import PRESETS, OutputPaths, train

    data = load_dataset(trainer_world.settings)
    root = tmp_path_factory.mktemp("smoke-model")
    result = train(
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        PRESETS["smoke"],
        OutputPaths(str(root)),
        dataset={"version": data.version, "hash": data.hash},
        fresh=True,
        verbose=0,
    )
    return Path(result.model_dir), result


@pytest.fixture
def model_dir(tmp_path, smoke_model) -> Path:
    """A private copy of the smoke model directory."""
    dest = tmp_path / "model"
    shutil.copytree(smoke_model[0], dest)
    return dest


@pytest.fixture
def cli_env(monkeypatch, world):
    """Point the real CLI (`trainer.cli.main`) at the private world."""
    for name, value in world.environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    return world
