"""TensorBoard logs written through `storage`, not through TensorFlow's own gs:// filesystem.

Why: TensorFlow's built-in GCS filesystem is a second Cloud Storage client with its own endpoint
(https://www.googleapis.com, compiled in: it reads no STORAGE_EMULATOR_HOST), credentials and retries. On Vertex AI
it works; anywhere else that the project's storage works (fake-gcs-server, the twin's custom jobs) it fails the
whole training run at the first summary. So the callback writes its event files to a local directory and, at the
end of each epoch and of training, copies them to the gs:// log directory (AIP_TENSORBOARD_LOG_DIR on Vertex AI),
where Vertex AI TensorBoard reads them. A local log directory is written directly, as before.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras

import storage


class MirroredTensorBoard(keras.callbacks.TensorBoard):
    """keras' TensorBoard callback writing to a local directory that each epoch end copies to `remote`."""

    def __init__(self, remote: str, **kwargs):
        self.local = Path(tempfile.mkdtemp(prefix="tensorboard-"))
        self.remote = remote
        super().__init__(str(self.local), **kwargs)

    def mirror(self) -> None:
        for path in sorted(self.local.rglob("*")):
            if path.is_file():
                storage.upload_file(path, storage.join(self.remote, path.relative_to(self.local).as_posix()))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():  # what the epoch wrote, on disk before the copy
            writer.flush()
        self.mirror()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)  # closes the writers
        self.mirror()


def tensorboard_callback(log_dir: str, **kwargs) -> keras.callbacks.Callback:
    if storage.is_gcs(log_dir):
        return MirroredTensorBoard(log_dir, **kwargs)
    return keras.callbacks.TensorBoard(log_dir, **kwargs)
