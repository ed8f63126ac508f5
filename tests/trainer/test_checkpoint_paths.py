"""A checkpoint's state.json is data from a bucket: the weights name it holds cannot steer a read or a write."""

import json

import pytest

from trainer.training import checkpoint


def write_state(directory, **fields) -> None:
    state = {"run_id": "r", "training_key": "k", "epoch": 1, **fields}
    (directory / checkpoint.STATE_FILE).write_text(json.dumps(state))


@pytest.mark.parametrize(
    "weights",
    ["/etc/passwd", "../epoch-0001.weights.h5", "sub/epoch-0001.weights.h5", "epoch-1.weights.h5/..", 7, ["x"]],
)
def test_a_weights_name_outside_the_checkpoint_directory_is_refused(tmp_path, weights):
    write_state(tmp_path, weights=weights)
    with pytest.raises(checkpoint.CheckpointError, match=r"state\.json: weights .* refused"):
        checkpoint.read_state(str(tmp_path))


def test_a_state_file_that_is_not_an_object_is_named(tmp_path):
    (tmp_path / checkpoint.STATE_FILE).write_text("[1, 2]")
    with pytest.raises(checkpoint.CheckpointError, match="expected a JSON object, got list"):
        checkpoint.read_state(str(tmp_path))


def test_the_names_the_callback_writes_are_accepted(tmp_path):
    write_state(tmp_path, weights="epoch-0012.weights.h5")
    assert checkpoint.read_state(str(tmp_path)).weights == "epoch-0012.weights.h5"
    write_state(tmp_path, weights=None)
    assert checkpoint.read_state(str(tmp_path)).weights is None
