"""Ingest with the upload's commit marker: a complete set that matches it is stored; a file changed after the
marker was written (a half-replaced set), one missing from it, or a missing or malformed marker is refused with a
message naming the file and both values, and nothing is written."""

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import make_idx_dir
from trainer.data import idx
from trainer.data.ingest import Source, ingest
from trainer.errors import CommandError


def write_marker(directory: Path, skip: str | None = None) -> Path:
    files = [
        {
            "name": name,
            "size": (directory / name).stat().st_size,
            "sha256": hashlib.sha256((directory / name).read_bytes()).hexdigest(),
        }
        for name in idx.FILE_NAMES.values()
        if name != skip
    ]
    marker = directory.parent / "COMMIT.json"
    marker.write_text(json.dumps({"files": files}))
    return marker


def versions(settings) -> list[Path]:
    root = Path(settings.datasets_bucket) / "fashion-mnist" / "versions"
    return sorted(root.iterdir()) if root.is_dir() else []


def test_a_set_matching_its_marker_is_ingested(settings, tmp_path):
    data = make_idx_dir(tmp_path / "drop")
    version = ingest(settings, Source("directory", str(data)), commit_marker=str(write_marker(data)))
    assert [p.name for p in versions(settings)] == [version]


def test_a_file_replaced_after_the_marker_is_refused(settings, tmp_path):
    data = make_idx_dir(tmp_path / "drop")
    marker = write_marker(data)
    make_idx_dir(tmp_path / "other", seed=1)
    name = idx.FILE_NAMES["test_images"]
    (data / name).write_bytes((tmp_path / "other" / name).read_bytes())  # half of a new upload
    with pytest.raises(
        CommandError, match=rf"{name}: [\d,]+ bytes, sha256 [0-9a-f]{{64}}; the commit marker .* records"
    ):
        ingest(settings, Source("directory", str(data)), commit_marker=str(marker))
    assert versions(settings) == []


def test_a_file_the_marker_does_not_list_is_refused(settings, tmp_path):
    data = make_idx_dir(tmp_path / "drop")
    marker = write_marker(data, skip=idx.FILE_NAMES["train_images"])
    with pytest.raises(CommandError, match="is not in the commit marker"):
        ingest(settings, Source("directory", str(data)), commit_marker=str(marker))
    assert versions(settings) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{", "not valid JSON"),
        (b'{"files": []}', "non-empty 'files' list"),
        (b'{"files": [{"name": "a", "size": 1, "sha256": "xyz"}]}', r"files\[0\].sha256 \(a\) must be 64"),
        (b'{"files": [{"name": "a", "size": -1, "sha256": "' + b"0" * 64 + b'"}]}', r"files\[0\].size"),
        (None, "no commit marker: the set is not complete yet"),
    ],
)
def test_a_missing_or_malformed_marker_is_refused(settings, tmp_path, content, message):
    data = make_idx_dir(tmp_path / "drop")
    marker = tmp_path / "COMMIT.json"
    if content is not None:
        marker.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        ingest(settings, Source("directory", str(data)), commit_marker=str(marker))
    assert versions(settings) == []
