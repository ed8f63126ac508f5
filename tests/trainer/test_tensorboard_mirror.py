"""TensorBoard logs to a gs:// directory go through `storage` (so fake-gcs-server and the twin's custom jobs work),
not through TensorFlow's own GCS filesystem, which only reaches www.googleapis.com."""

import keras
import numpy as np

import storage
from trainer.training.tensorboard import MirroredTensorBoard, tensorboard_callback


def test_a_gs_log_directory_receives_each_epochs_event_files(gcs_bucket, tmp_path):
    remote = storage.join(gcs_bucket, "jobs", "run-1", "logs")
    callback = tensorboard_callback(remote, write_graph=False)
    assert isinstance(callback, MirroredTensorBoard)
    assert callback.write_graph is False  # the caller's options reach keras' callback
    assert callback.local.name.startswith("tensorboard-") and callback.log_dir == str(callback.local)
    seen_after_epoch = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            events = [u for u in storage.list_uris(remote) if "tfevents" in u]
            seen_after_epoch.append(b"".join(storage.read_bytes(u) for u in events))

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int64")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback, Probe()])
    events = [u for u in storage.list_uris(remote) if "tfevents" in u]
    assert events and all(u.startswith(f"{remote}/train/") for u in events)
    # copied at the first epoch's end, flushed first: the epoch's loss summary is already in the copy
    assert b"epoch_loss" in seen_after_epoch[0]
    local = next(p for p in callback.local.rglob("*tfevents*"))
    assert storage.read_bytes(events[0]) == local.read_bytes()  # the closed file, complete


def test_a_local_log_directory_is_written_directly(tmp_path):
    callback = tensorboard_callback(str(tmp_path / "logs"), write_graph=False)
    assert type(callback) is keras.callbacks.TensorBoard
    assert (callback.log_dir, callback.write_graph) == (str(tmp_path / "logs"), False)
