"""The deferrals object in-process, over HTTP against fake-gcs-server: what the object holds byte for byte, that
every change is a compare-and-swap that re-reads after losing a race (the emulator answers 412 to a multipart
upload at a stale generation, not to a media upload or a delete: starter/deferrals.py) and gives up after ATTEMPTS,
and the errors a failed call becomes."""

from __future__ import annotations

import json

import pytest
import requests

from contracts.starter import DRIFT, NEW_DATA, SCHEDULE
from starter.deferrals import ATTEMPTS, TIMEOUT_S, DeferralError, FileDeferrals, GcsDeferrals
from starter.events import Trigger

NEW = Trigger(NEW_DATA, "1765", "gs://d/raw/_COMMIT#1765")
DRIFTED = Trigger(DRIFT, "0.inc", "drift incident opened")
WEEKLY = Trigger(SCHEDULE, "202612070400")
OBJECT = "starter/deferred.json"


class Recording(requests.Session):
    """A plain session that records (method, path, query, timeout) and can run a hook before a request."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, dict, object]] = []
        self.before: dict[str, object] = {}  # method -> callable run before each request of that method

    def request(self, method, url, params=None, **kwargs):
        hook = self.before.get(method)
        if callable(hook):
            hook()
        path = url.split("://", 1)[1].split("/", 1)[1]
        self.calls.append((method, "/" + path, dict(params or {}), kwargs.get("timeout")))
        return super().request(method, url, params=params, **kwargs)


def _blob(bucket_uri: str):
    import storage

    return storage.gcs_client().bucket(bucket_uri[5:]).blob(OBJECT)


@pytest.fixture
def gcs(gcs_bucket) -> tuple[GcsDeferrals, Recording, str]:
    import os

    session = Recording()
    uri = f"{gcs_bucket}/{OBJECT}"
    return GcsDeferrals.at(session, uri, dict(os.environ)), session, gcs_bucket


def test_the_address_is_the_emulator_s_when_one_is_named_else_google_s():
    session = requests.Session()
    assert GcsDeferrals.at(session, "gs://b/o", {}).host == "https://storage.googleapis.com"
    assert GcsDeferrals.at(session, "gs://b/o", {"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}).host == (
        "http://127.0.0.1:4443"
    )
    assert GcsDeferrals.at(session, "gs://b/o", {"STORAGE_EMULATOR_HOST": "https://e:1/"}).host == "https://e:1"
    assert GcsDeferrals.at(session, "gs://b/starter/deferred.json", {})._bucket_object == (
        "b",
        "starter/deferred.json",
    )


def test_the_address_defaults_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://10.0.0.1:9")
    assert GcsDeferrals.at(requests.Session(), "gs://b/o").host == "http://10.0.0.1:9"


@pytest.mark.parametrize("uri", ["b/o", "s3://b/o", "gs://b", "/tmp/deferred.json", "gs:///o", "gs://b/", "b/gs://b/o"])
def test_an_address_that_is_not_a_bucket_object_is_refused_with_the_form_expected(uri):
    with pytest.raises(DeferralError) as raised:
        GcsDeferrals.at(requests.Session(), uri, {})
    assert str(raised.value) == f"{uri!r}: the deferrals object must be gs://<bucket>/<object>"


def test_the_object_holds_each_trigger_once_sorted_and_indented_and_an_empty_list_at_the_end(gcs):
    deferrals, session, bucket = gcs
    assert deferrals.pending() == []
    deferrals.add(NEW)
    deferrals.add(DRIFTED)
    deferrals.add(Trigger(NEW_DATA, "1765", "another detail"))  # the same kind and key: once
    assert deferrals.pending() == [NEW, DRIFTED]
    assert (
        _blob(bucket).download_as_bytes()
        == json.dumps({"triggers": [NEW.__dict__, DRIFTED.__dict__]}, indent=1, sort_keys=True).encode()
    )
    blob = _blob(bucket)
    blob.reload()
    assert blob.content_type == "application/json"
    deferrals.remove([NEW])
    assert deferrals.pending() == [DRIFTED]
    deferrals.remove([DRIFTED])
    assert deferrals.pending() == [] and _blob(bucket).download_as_bytes() == b'{\n "triggers": []\n}'
    deferrals.remove([DRIFTED])  # nothing to remove: nothing is written
    assert session.calls[-1][0] == "GET"
    assert all(timeout == TIMEOUT_S for *_, timeout in session.calls) and TIMEOUT_S == 30


def test_every_write_is_a_multipart_upload_naming_the_generation_it_read(gcs):
    deferrals, session, bucket = gcs
    deferrals.add(NEW)
    create = [c for c in session.calls if c[0] == "POST"][-1]
    assert create[1] == f"/upload/storage/v1/b/{bucket[5:]}/o"
    assert create[2] == {"uploadType": "multipart", "ifGenerationMatch": "0"}  # only if absent
    blob = _blob(bucket)
    blob.reload()
    generation = blob.generation
    deferrals.add(WEEKLY)
    update = [c for c in session.calls if c[0] == "POST"][-1]
    assert update[2] == {"uploadType": "multipart", "ifGenerationMatch": str(generation)}
    reads = [c for c in session.calls if c[0] == "GET" and c[2].get("alt") == "media"]
    assert reads[-1][1] == f"/storage/v1/b/{bucket[5:]}/o/starter%2Fdeferred.json"
    assert reads[-1][2] == {"alt": "media", "generation": str(generation)}
    blob = _blob(bucket)
    blob.reload()
    last = blob.generation
    deferrals.remove([NEW, WEEKLY])
    emptied = [c for c in session.calls if c[0] == "POST"][-1]
    assert emptied[2] == {"uploadType": "multipart", "ifGenerationMatch": str(last)}
    assert [c[0] for c in session.calls].count("DELETE") == 0


def test_a_change_made_meanwhile_is_re_read_and_kept_never_overwritten(gcs):
    deferrals, session, bucket = gcs
    deferrals.add(NEW)
    other = GcsDeferrals.at(requests.Session(), deferrals.uri, {"STORAGE_EMULATOR_HOST": deferrals.host})
    raced = []

    def another_writer_first():
        if not raced:
            raced.append(True)
            other.add(WEEKLY)  # lands between this writer's read and its write: the write gets 412

    session.before["POST"] = another_writer_first
    deferrals.add(DRIFTED)
    assert deferrals.pending() == [NEW, WEEKLY, DRIFTED]
    assert [c[0] for c in session.calls if c[0] == "POST"][-2:] == ["POST", "POST"]  # lost once, then won

    raced.clear()
    other.remove([WEEKLY])
    deferrals.remove([NEW, DRIFTED])  # emptied at a stale generation: re-read, WEEKLY is back and stays
    assert deferrals.pending() == [WEEKLY]


def test_a_writer_that_loses_every_race_gives_up_after_attempts_with_a_retryable_error(gcs):
    deferrals, session, _bucket = gcs
    deferrals.add(NEW)
    other = GcsDeferrals.at(requests.Session(), deferrals.uri, {"STORAGE_EMULATOR_HOST": deferrals.host})
    keys = iter(range(100))
    session.before["POST"] = lambda: other.add(Trigger(SCHEDULE, str(next(keys))))
    posts_before = sum(1 for c in session.calls if c[0] == "POST")
    with pytest.raises(DeferralError) as raised:
        deferrals.add(DRIFTED)
    assert str(raised.value) == f"{deferrals.uri}: changed by another writer {ATTEMPTS} times in a row; retry"
    assert sum(1 for c in session.calls if c[0] == "POST") - posts_before == ATTEMPTS == 5
    assert DRIFTED not in deferrals.pending()


def test_an_object_deleted_between_its_metadata_and_its_content_reads_as_empty(gcs):
    deferrals, session, bucket = gcs
    deferrals.add(NEW)
    original = session.request

    def delete_after_metadata(method, url, params=None, **kwargs):
        response = original(method, url, params=params, **kwargs)
        if method == "GET" and not (params or {}).get("alt"):
            _blob(bucket).delete()
        return response

    session.request = delete_after_metadata
    assert deferrals.pending() == []


def test_a_failed_call_is_a_deferral_error_naming_the_call_and_the_status(gcs):
    deferrals, _session, bucket = gcs
    missing = GcsDeferrals(requests.Session(), f"gs://no-such-bucket-{bucket[5:]}/{OBJECT}", deferrals.host)
    assert missing.pending() == []  # an absent object is no deferral
    with pytest.raises(DeferralError) as raised:
        missing.add(NEW)
    assert str(raised.value).startswith(f"write {missing.uri}: HTTP 404: ")

    class Forbidden(requests.Session):
        def request(self, method, url, **kwargs):
            response = requests.Response()
            response.status_code, response._content = 403, b'{"error": {"message": "storage.objects.get denied"}}'
            return response

    forbidden = GcsDeferrals(Forbidden(), deferrals.uri, deferrals.host)
    with pytest.raises(DeferralError) as read:
        forbidden.pending()
    denied = '{"error": {"message": "storage.objects.get denied"}}'
    assert str(read.value) == f"read {deferrals.uri}: HTTP 403: {denied}"


def test_a_failed_content_read_or_write_is_an_error_too(gcs):
    deferrals, session, _bucket = gcs
    deferrals.add(NEW)
    original = session.request

    def refuse(predicate):
        def call(method, url, params=None, **kwargs):
            if predicate(method, params or {}):
                response = requests.Response()
                response.status_code, response._content = 503, b"backend error"
                return response
            return original(method, url, params=params, **kwargs)

        return call

    session.request = refuse(lambda method, params: params.get("alt") == "media")
    with pytest.raises(DeferralError, match=r"^read gs://.*: HTTP 503: backend error$"):
        deferrals.pending()
    session.request = refuse(lambda method, params: method == "POST")
    with pytest.raises(DeferralError, match=r"^write gs://.*: HTTP 503: backend error$"):
        deferrals.remove([NEW])


def test_the_local_file_keeps_the_same_list_and_is_replaced_whole(tmp_path):
    path = tmp_path / "state" / "deferred.json"
    deferrals = FileDeferrals(path)
    assert deferrals.pending() == []
    deferrals.add(NEW)
    deferrals.add(DRIFTED)
    deferrals.add(NEW)
    assert (
        path.read_bytes()
        == json.dumps({"triggers": [NEW.__dict__, DRIFTED.__dict__]}, indent=1, sort_keys=True).encode()
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["deferred.json"]  # no scratch file left
    deferrals.remove([NEW])
    assert deferrals.pending() == [DRIFTED]
    deferrals.remove([DRIFTED])
    assert not path.exists()


def test_the_local_file_s_folders_are_made_and_removing_from_no_file_is_no_error(tmp_path):
    """`python -m lifecycle.alert_starter --deferrals DIR/.../deferred.json` names folders that may not exist yet;
    a removal when nothing was ever deferred (or the file was cleared by hand) is nothing to do."""
    path = tmp_path / "state" / "starter" / "deferred.json"
    FileDeferrals(path).add(NEW)
    assert FileDeferrals(path).pending() == [NEW]
    absent = FileDeferrals(tmp_path / "none" / "deferred.json")
    absent.remove([NEW])
    assert absent.pending() == [] and not (tmp_path / "none").exists()


def test_the_upload_names_the_object_and_its_type_in_the_metadata_part_byte_for_byte(gcs):
    """fake-gcs-server reads the metadata's JSON keys in any case and takes the type from the media part's header;
    Cloud Storage reads the REST names as written, so the body the starter sends is pinned exactly."""
    deferrals, session, _bucket = gcs
    sent = []
    original = session.request

    def keep(method, url, params=None, **kwargs):
        if method == "POST":
            sent.append((kwargs["data"], kwargs["headers"]))
        return original(method, url, params=params, **kwargs)

    session.request = keep
    deferrals.add(NEW)
    body = b"".join(
        [
            b"--fmnist-starter-deferrals\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
            b'{"name": "starter/deferred.json", "contentType": "application/json"}\r\n',
            b"--fmnist-starter-deferrals\r\nContent-Type: application/json\r\n\r\n",
            json.dumps({"triggers": [NEW.__dict__]}, indent=1, sort_keys=True).encode(),
            b"\r\n--fmnist-starter-deferrals--\r\n",
        ]
    )
    [(data, headers)] = sent
    assert data == body
    assert {k.lower(): v for k, v in headers.items()} == {  # header names are case-insensitive
        "content-type": "multipart/related; boundary=fmnist-starter-deferrals"
    }


def test_an_object_deleted_between_its_reads_is_written_again_only_if_still_absent(gcs):
    deferrals, session, bucket = gcs
    deferrals.add(NEW)
    original = session.request
    deleted = []

    def delete_once_after_metadata(method, url, params=None, **kwargs):
        response = original(method, url, params=params, **kwargs)
        if method == "GET" and not (params or {}).get("alt") and not deleted:
            deleted.append(True)
            _blob(bucket).delete()
        return response

    session.request = delete_once_after_metadata
    posts = sum(1 for c in session.calls if c[0] == "POST")
    deferrals.add(DRIFTED)
    assert deferrals.pending() == [DRIFTED]
    writes = [c for c in session.calls if c[0] == "POST"][posts:]
    assert [w[2]["ifGenerationMatch"] for w in writes] == ["0"]  # at once, and only where there is no object


def test_a_bad_request_is_an_error_and_google_s_message_is_cut_at_300_characters(gcs):
    deferrals, _session, _bucket = gcs
    message = "x" * 1000

    class BadRequest(requests.Session):
        def request(self, method, url, **kwargs):
            response = requests.Response()
            response.status_code, response._content = 400, message.encode()
            return response

    with pytest.raises(DeferralError) as raised:
        GcsDeferrals(BadRequest(), deferrals.uri, deferrals.host).pending()
    assert str(raised.value) == f"read {deferrals.uri}: HTTP 400: {'x' * 300}"


def test_an_empty_object_or_file_holds_no_deferral(gcs, tmp_path):
    """A zero-byte object (written by hand, or by a tool that truncates) is read as an empty list, not an error."""
    deferrals, _session, bucket = gcs
    _blob(bucket).upload_from_string(b"")
    assert deferrals.pending() == []
    deferrals.add(NEW)
    assert deferrals.pending() == [NEW]
    path = tmp_path / "deferred.json"
    path.write_bytes(b"")
    assert FileDeferrals(path).pending() == []
    path.write_bytes(b"{}")
    assert FileDeferrals(path).pending() == []
