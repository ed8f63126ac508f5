"""Per-epoch checkpoints a killed training resumes from: weights, optimizer state and the epoch counter.

Why our own callback instead of keras.callbacks.BackupAndRestore: the checkpoint directory can be a gs:// URI
(AIP_CHECKPOINT_DIR), and every write must go through trainer/storage.py so a kill mid-write never leaves a
checkpoint that half-loads. Layout: `epoch-NNNN.weights.h5` files, then `state.json` naming the newest one; the
state file is written last, so whatever it names is complete.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import keras

from trainer import storage

STATE_FILE = "state.json"


@dataclass
class CheckpointState:
    """What state.json holds: enough to continue the same run where it stopped."""
    run_id: str
    training_key: str
    epoch: int = 0                      # epochs completed
    weights: Optional[str] = None       # file name of the newest weights, relative to the checkpoint dir
    completed: bool = False
    history: list = field(default_factory=list)   # one dict of metrics per completed epoch

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def read_state(checkpoint_dir: str) -> Optional[CheckpointState]:
    try:
        data = json.loads(storage.read_text(storage.join(checkpoint_dir, STATE_FILE)))
    except storage.NotFound:
        return None
    return CheckpointState(**data)


def write_state(checkpoint_dir: str, state: CheckpointState) -> None:
    storage.write_text(storage.join(checkpoint_dir, STATE_FILE), state.to_json(), content_type="application/json")


def restore(model: keras.Model, checkpoint_dir: str, state: CheckpointState) -> None:
    """Load weights and optimizer state (the model must be compiled, so the optimizer variables exist)."""
    if not state.weights:
        return
    model.optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory() as tmp:
        local = storage.download_file(storage.join(checkpoint_dir, state.weights), Path(tmp) / state.weights)
        model.load_weights(local)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves after every epoch; only the writer (the chief) writes, the others only take part in the save."""

    def __init__(self, checkpoint_dir: str, state: CheckpointState, *, writer: bool = True):
        super().__init__()
        self.checkpoint_dir, self.state, self.writer = checkpoint_dir, state, writer

    def on_epoch_end(self, epoch, logs=None):
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            self.model.save_weights(local)  # every worker saves: with a distribution strategy it may need them all
            if not self.writer:
                return
            previous = self.state.weights
            storage.upload_file(local, storage.join(self.checkpoint_dir, name))
        self.state.epoch = epoch + 1
        self.state.weights = name
        self.state.history.append({k: float(v) for k, v in (logs or {}).items()})
        write_state(self.checkpoint_dir, self.state)
        if previous and previous != name:
            _remove(storage.join(self.checkpoint_dir, previous))


def mark_completed(checkpoint_dir: str, state: CheckpointState) -> None:
    """A completed run is not resumed: the same command afterwards starts a new run."""
    state.completed = True
    write_state(checkpoint_dir, state)


def _remove(uri: str) -> None:
    """Drop a superseded weights file; on GCS they stay (storage.py has no single-object delete yet)."""
    if not storage.is_gcs(uri):
        Path(uri).unlink(missing_ok=True)
