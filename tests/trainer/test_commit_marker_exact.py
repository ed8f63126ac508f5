"""The commit marker's checks (trainer/data/commit_marker.py) word for word: every refusal names the field or file at
fault and both values, a file that differs in content alone (same size) or in size alone is refused, and the
marker's edge values (size 0, a name from a gs:// URI) are accepted. tests/trainer/test_commit_marker.py runs them
through ingest; these pin what an uploader reads when a set is refused."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from trainer.data.commit_marker import check_set, parse_marker, read_marker
from trainer.errors import CommandError

SHA_A = hashlib.sha256(b"abcd").hexdigest()
WHERE = "gs://b/raw/_COMMIT"


def marker(*entries) -> bytes:
    return json.dumps({"files": list(entries)}).encode()


def refused(data: bytes) -> str:
    with pytest.raises(CommandError) as caught:
        parse_marker(data, WHERE)
    return str(caught.value)


def test_a_marker_parses_to_each_files_size_and_sha256():
    data = marker({"name": "a.gz", "size": 4, "sha256": SHA_A}, {"name": "empty.gz", "size": 0, "sha256": "0" * 64})
    assert parse_marker(data, WHERE) == {"a.gz": (4, SHA_A), "empty.gz": (0, "0" * 64)}


def test_invalid_json_is_refused_with_the_parsers_reason():
    assert re.fullmatch(
        rf"{WHERE}: the commit marker is not valid JSON \(Expecting .*\); nothing was ingested", refused(b"{")
    )


@pytest.mark.parametrize("data", [b"[]", b'"files"', b"{}", b'{"files": []}', b'{"files": {"name": "a"}}'])
def test_a_marker_without_a_files_list_is_refused(data):
    assert refused(data) == f"{WHERE}: the commit marker needs a non-empty 'files' list of {{name, size, sha256}}"


@pytest.mark.parametrize(
    "entry, message",
    [
        ("a.gz", "files[0].name must be a file name without '/'"),
        ({"size": 4, "sha256": SHA_A}, "files[0].name must be a file name without '/'"),
        ({"name": "", "size": 4, "sha256": SHA_A}, "files[0].name must be a file name without '/'"),
        ({"name": 7, "size": 4, "sha256": SHA_A}, "files[0].name must be a file name without '/'"),
        ({"name": "raw/a.gz", "size": 4, "sha256": SHA_A}, "files[0].name must be a file name without '/'"),
        ({"name": "a.gz", "sha256": SHA_A}, "files[0].size (a.gz) must be a whole number of bytes"),
        ({"name": "a.gz", "size": -1, "sha256": SHA_A}, "files[0].size (a.gz) must be a whole number of bytes"),
        ({"name": "a.gz", "size": 4.0, "sha256": SHA_A}, "files[0].size (a.gz) must be a whole number of bytes"),
        ({"name": "a.gz", "size": True, "sha256": SHA_A}, "files[0].size (a.gz) must be a whole number of bytes"),
        ({"name": "a.gz", "size": 4}, "files[0].sha256 (a.gz) must be 64 lowercase hex characters"),
        ({"name": "a.gz", "size": 4, "sha256": SHA_A.upper()}, "files[0].sha256 (a.gz) must be 64 lowercase hex"),
        ({"name": "a.gz", "size": 4, "sha256": SHA_A + "0"}, "files[0].sha256 (a.gz) must be 64 lowercase hex"),
        ({"name": "a.gz", "size": 4, "sha256": SHA_A[:-1]}, "files[0].sha256 (a.gz) must be 64 lowercase hex"),
    ],
)
def test_a_bad_entry_is_refused_naming_its_field_and_file(entry, message):
    assert refused(marker(entry)).startswith(f"{WHERE}: {message}")


def test_the_second_bad_entry_is_named_by_its_index():
    good = {"name": "a.gz", "size": 4, "sha256": SHA_A}
    assert refused(marker(good, {"name": "b.gz", "size": -2, "sha256": SHA_A})) == (
        f"{WHERE}: files[1].size (b.gz) must be a whole number of bytes"
    )


def test_a_file_listed_twice_is_refused():
    entry = {"name": "a.gz", "size": 4, "sha256": SHA_A}
    assert refused(marker(entry, entry)) == f"{WHERE}: a.gz is listed twice"


LISTED = {"a.gz": (4, SHA_A), "b.gz": (1, hashlib.sha256(b"b").hexdigest())}


def test_a_set_that_matches_its_marker_passes_whatever_path_each_file_came_from():
    check_set({"train": b"abcd", "test": b"b"}, {"train": "gs://bucket/raw/a.gz", "test": "/drop/b.gz"}, LISTED, WHERE)


def test_a_file_the_marker_does_not_list_is_refused_naming_what_it_lists():
    with pytest.raises(CommandError) as caught:
        check_set({"train": b"abcd"}, {"train": "gs://bucket/raw/c.gz"}, LISTED, WHERE)
    assert str(caught.value) == (
        f"gs://bucket/raw/c.gz is not in the commit marker {WHERE} (it lists a.gz, b.gz): the set is not the one "
        "that was committed; nothing was ingested. Upload the set again, marker last"
    )


@pytest.mark.parametrize("data", [b"abce", b"abcde"], ids=["same size, other content", "other size"])
def test_a_file_that_differs_from_the_marker_is_refused_with_both_values(data):
    big = {"a.gz": (12_345, SHA_A)} if len(data) == 5 else {"a.gz": (4, SHA_A)}
    with pytest.raises(CommandError) as caught:
        check_set({"train": data}, {"train": "/drop/a.gz"}, big, WHERE)
    size = big["a.gz"][0]
    assert str(caught.value) == (
        f"/drop/a.gz: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}; the commit marker {WHERE} "
        f"records {size:,} bytes, sha256 {SHA_A}. The file changed after the marker was written (or is half "
        "uploaded); nothing was ingested. Upload the set again, marker last"
    )


def test_a_large_size_is_printed_with_thousands_separators():
    with pytest.raises(CommandError, match=r"^/drop/a\.gz: 4 bytes, .* records 26,421,880 bytes, "):
        check_set({"train": b"abcd"}, {"train": "/drop/a.gz"}, {"a.gz": (26_421_880, SHA_A)}, WHERE)


def test_a_marker_is_read_from_storage(tmp_path):
    path = tmp_path / "_COMMIT"
    path.write_bytes(marker({"name": "a.gz", "size": 4, "sha256": SHA_A}))
    assert read_marker(str(path)) == {"a.gz": (4, SHA_A)}
    path.write_bytes(b"[]")
    with pytest.raises(CommandError, match=rf"^{re.escape(str(path))}: the commit marker needs a non-empty"):
        read_marker(str(path))


def test_a_missing_or_unreadable_marker_is_refused_with_what_to_do(tmp_path):
    missing = tmp_path / "_COMMIT"
    with pytest.raises(CommandError) as caught:
        read_marker(str(missing))
    assert str(caught.value) == (
        f"{missing}: no commit marker: the set is not complete yet (the uploader writes the marker last)"
    )
    with pytest.raises(CommandError) as caught:
        read_marker(str(tmp_path))
    assert str(caught.value) == (
        f"cannot read the commit marker {tmp_path}: {tmp_path}: is a directory, expected a file"
    )


def test_a_file_named_without_a_folder_is_looked_up_by_that_name():
    """A relative path in the working directory: its name is the whole path."""
    check_set({"train": b"abcd"}, {"train": "a.gz"}, LISTED, WHERE)
    with pytest.raises(CommandError, match=r"^c\.gz is not in the commit marker "):
        check_set({"train": b"abcd"}, {"train": "c.gz"}, LISTED, WHERE)
