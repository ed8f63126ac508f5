"""Per-epoch checkpoints a killed training resumes from: weights, optimizer state and the epoch counter.

Why our own callback instead of keras.callbacks.BackupAndRestore: the checkpoint directory can be a gs:// URI
(AIP_CHECKPOINT_DIR), and every write must go through trainer/storage.py so a kill mid-write never leaves a
checkpoint that half-loads. Layout: `epoch-NNNN.weights.h5` files, then `state.json` naming the newest one; the
state file is written last, so whatever it names is complete. The `weights` name read back is checked to be a
plain file name of that layout: state.json is data from a bucket, and must not steer a read or a write (the
download into a local temporary directory) outside the checkpoint directory.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

import storage
from trainer.errors import CommandError

STATE_FILE = "state.json"
WEIGHTS_NAME = re.compile(r"epoch-\d{1,9}\.weights\.h5")


class CheckpointError(CommandError):
    """state.json cannot be resumed from; the message names the file, the field and the fix."""


@dataclass
class CheckpointState:
    """What state.json holds: enough to continue the same run where it stopped."""

    run_id: str
    training_key: str
    epoch: int = 0  # epochs completed
    weights: str | None = None  # file name of the newest weights, relative to the checkpoint dir
    completed: bool = False
    history: list = field(default_factory=list)  # one dict of metrics per completed epoch

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def read_state(checkpoint_dir: str) -> CheckpointState | None:
    try:
        data = json.loads(storage.read_text(storage.join(checkpoint_dir, STATE_FILE)))
    except storage.NotFound:
        return None
    where = storage.join(checkpoint_dir, STATE_FILE)
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(data).__name__}; delete it to start afresh")
    weights = data.get("weights")
    if weights is not None and not (isinstance(weights, str) and WEIGHTS_NAME.fullmatch(weights)):
        raise CheckpointError(
            f"{where}: weights {str(weights)[:80]!r} is not a weights file name of this checkpoint directory "
            "(epoch-NNNN.weights.h5, no path); refused so that nothing is read or written outside it. "
            "Delete state.json to start the run afresh"
        )
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
    """Saves at the end of an epoch once `min_interval_s` passed since the last save, and after the last epoch.

    Why an interval: on a GPU an epoch takes under a second while weights plus Adam state of the larger models are
    ~50 MB; on a CPU every epoch is saved. Every epoch's metrics are recorded either way. Only the chief calls this.
    """

    def __init__(self, checkpoint_dir: str, state: CheckpointState, *, min_interval_s: float = 0.0):
        super().__init__()
        self.checkpoint_dir, self.state, self.min_interval_s = checkpoint_dir, state, min_interval_s
        self._last_save = time.monotonic()
        self._pending: list = []

    def on_epoch_end(self, epoch, logs=None):
        self._pending.append({k: float(v) for k, v in (logs or {}).items()})
        last = epoch + 1 >= self.params.get("epochs", 0)
        if not last and time.monotonic() - self._last_save < self.min_interval_s:
            return
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        previous = self.state.weights
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            self.model.save_weights(local)
            storage.upload_file(local, storage.join(self.checkpoint_dir, name))
        self.state.epoch = epoch + 1
        self.state.weights = name
        self.state.history.extend(self._pending)
        self._pending = []
        write_state(self.checkpoint_dir, self.state)
        self._last_save = time.monotonic()
        if previous and previous != name:
            _remove(storage.join(self.checkpoint_dir, previous))


def mark_completed(checkpoint_dir: str, state: CheckpointState) -> None:
    """A completed run is not resumed: the same command afterwards starts a new run."""
    state.completed = True
    write_state(checkpoint_dir, state)


def _remove(uri: str) -> None:
    """Drop a superseded weights file (locally and on GCS)."""
    storage.delete(uri)
