"""Every error reply, exactly (service/replies.py, issue 27's service-small group): the body, status and headers a
client gets for each kind of refusal, the reason counted, the refused body drained within its limits, the log line
of an unhandled error; in-process, from a WSGI environ as the Flask handlers and the predict route pass it."""

from __future__ import annotations

import io
import json
import logging
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from service.accounting import ERROR, REQUEST_ID
from service.errors import RequestError
from service.replies import drain_body, error_reply, status_line


class Recording(io.BytesIO):
    """A request body that remembers how much each read asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


def _counted(reason: str) -> float:
    return REGISTRY.get_sample_value("fmnist_request_errors_total", {"reason": reason}) or 0.0


def _reply(environ: dict, error: Exception, max_body_bytes: int = 1000) -> tuple[int, dict, list]:
    status, body, headers = error_reply(environ, error, max_body_bytes)
    return status, json.loads(body), headers


def test_status_lines_are_werkzeug_s_and_an_unknown_code_says_so():
    assert status_line(413) == "413 REQUEST ENTITY TOO LARGE"
    assert status_line(404) == "404 NOT FOUND"
    assert status_line(599) == "599 UNKNOWN"


def test_a_request_error_is_answered_as_raised_counted_and_left_in_the_environ():
    environ: dict = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict"}
    before = _counted("bad_shape_exact")
    status, body, headers = _reply(environ, RequestError(422, "bad_shape_exact", "send 28x28 images"))
    assert (status, body, headers) == (422, {"error": "bad_shape_exact", "detail": "send 28x28 images"}, [])
    assert environ[ERROR] == {"error": "bad_shape_exact", "detail": "send 28x28 images"}
    assert _counted("bad_shape_exact") == before + 1


def test_a_too_large_body_is_drained_named_with_the_limit_and_closes_the_connection():
    stream = Recording(b"x" * 600_000)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "wsgi.input": stream}
    before = _counted("request_entity_too_large")
    status, body, headers = _reply(environ, RequestEntityTooLarge(), 2_000_000)
    assert status == 413
    assert body == {
        "error": "request_entity_too_large",
        "detail": "the body is over 2000000 bytes (the Vertex AI limit): split the batch or use the binary path",
    }
    assert headers == [("Connection", "close")]  # werkzeug's text/html Content-Type left out: the body is JSON
    assert stream.tell() == 600_000  # the client's kernel sees no reset while it is still sending
    assert _counted("request_entity_too_large") == before + 1


def test_an_unknown_route_and_a_wrong_method_name_the_path_and_the_api_document():
    status, body, headers = _reply({"REQUEST_METHOD": "GET", "PATH_INFO": "/nowhere"}, NotFound())
    assert (status, body, headers) == (
        404,
        {"error": "not_found", "detail": "no route /nowhere; see /openapi.json"},
        [],
    )
    status, body, headers = _reply({"REQUEST_METHOD": "GET", "PATH_INFO": "/predict"}, MethodNotAllowed(["POST"]))
    assert (status, body, headers) == (
        405,
        {"error": "method_not_allowed", "detail": "GET is not allowed on /predict; see /openapi.json"},
        [("Allow", "POST")],
    )
    _, body, _ = _reply({}, MethodNotAllowed(["POST"]))
    assert body["detail"] == "? is not allowed on ; see /openapi.json"


def test_other_http_errors_keep_werkzeug_s_description_or_name_and_a_codeless_one_is_a_400():
    status, body, _ = _reply({"PATH_INFO": "/x"}, BadRequest("the form is broken"))
    assert (status, body) == (400, {"error": "bad_request", "detail": "the form is broken"})
    bare = BadRequest()
    bare.description = None
    assert _reply({}, bare)[1] == {"error": "bad_request", "detail": "Bad Request"}
    status, body, _ = _reply({}, HTTPException("no code"))
    assert (status, body) == (400, {"error": "unknown_error", "detail": "no code"})


def test_an_unhandled_error_is_a_500_naming_its_type_and_request_id_and_is_logged(caplog):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", REQUEST_ID: "req-7"}
    with caplog.at_level(logging.ERROR, logger="service"):
        status, body, headers = _reply(environ, ZeroDivisionError("boom"))
    assert (status, body, headers) == (
        500,
        {
            "error": "internal_error",
            "detail": "ZeroDivisionError: the service failed; see its logs for request id req-7",
        },
        [],
    )
    [record] = [r for r in caplog.records if r.name == "service"]
    assert record.getMessage() == "unhandled error on POST /predict"
    assert record.exc_info is not None and record.exc_info[1].args == ("boom",)
    _, body, _ = _reply({}, ZeroDivisionError("boom"))
    assert body["detail"] == "ZeroDivisionError: the service failed; see its logs for request id ?"


def test_an_unhandled_error_without_method_or_path_logs_placeholders(caplog):
    with caplog.at_level(logging.ERROR, logger="service"):
        _reply({}, KeyError("k"))
    assert [r.getMessage() for r in caplog.records if r.name == "service"] == ["unhandled error on ? "]


def test_drain_reads_in_quarter_mebibyte_chunks_up_to_its_limit_and_stops_at_the_end():
    stream = Recording(b"y" * 600_000)
    assert drain_body({"wsgi.input": stream}) == 600_000
    assert stream.asked == [262_144, 262_144, 262_144, 262_144]  # the last read finds the end: no more reads
    stream = Recording(b"y" * 600_000)
    assert drain_body({"wsgi.input": stream}, limit=300_000) == 300_000
    assert stream.asked == [262_144, 37_856] and stream.tell() == 300_000  # never past the limit


def test_drain_stops_at_its_deadline_and_survives_a_client_that_hangs_up():
    stream = Recording(b"z" * 1000)
    assert drain_body({"wsgi.input": stream}, seconds=0.0) == 0 and stream.asked == []
    assert drain_body({}) == 0

    class HangsUp(Recording):
        def read(self, size: int | None = -1) -> bytes:
            if self.asked:
                raise ConnectionResetError("peer gone")
            return super().read(size)

    hangs_up = HangsUp(b"w" * 600_000)
    assert drain_body({"wsgi.input": hangs_up}) == 262_144  # what was read before the reset


@pytest.mark.parametrize("code", [404, 405, 413])
def test_the_reason_counted_is_the_reply_s_reason(code):
    error = {404: NotFound(), 405: MethodNotAllowed(["POST"]), 413: RequestEntityTooLarge()}[code]
    reason = {404: "not_found", 405: "method_not_allowed", 413: "request_entity_too_large"}[code]
    environ: dict = {"wsgi.input": io.BytesIO(b"")}
    before = _counted(reason)
    assert _reply(environ, error)[1]["error"] == reason
    assert environ[ERROR]["error"] == reason and _counted(reason) == before + 1


def test_drain_reads_at_most_32_mebibytes_by_default():
    stream = io.BytesIO(bytes(32 * 1024 * 1024 + 10))
    assert drain_body({"wsgi.input": stream}) == 32 * 1024 * 1024  # Cloud Run's largest HTTP/1 request
    assert stream.read() == bytes(10)  # the rest is left: the connection closes


def test_a_client_still_sending_after_five_seconds_is_cut_off(monkeypatch):
    clock = [100.0]

    class Slow(Recording):
        def read(self, size: int | None = -1) -> bytes:
            clock[0] += 1.0  # each chunk takes the client a second
            return super().read(size)

    monkeypatch.setattr("service.replies.time", SimpleNamespace(monotonic=lambda: clock[0]))
    stream = Slow(b"s" * 10 * 262_144)
    assert drain_body({"wsgi.input": stream}) == 5 * 262_144  # reads started at 0, 1, 2, 3 and 4 s
