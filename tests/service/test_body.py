"""Reading the request body (service/body.py): one read of exactly Content-Length bytes, the limit before any
read, a short body named as a disconnected client, and a chunked body read to its end or refused over the limit."""

from __future__ import annotations

import io

import pytest
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from service.body import read_body


class Recorded(io.BytesIO):
    """An input stream that records the size of every read asked of it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.sizes: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(-1 if size is None else size)
        return super().read(size)


def environ(stream: io.BytesIO, length: str | None, *, chunked: bool = False) -> dict:
    env: dict = {"wsgi.input": stream, "wsgi.input_terminated": True}
    if length is not None:
        env["CONTENT_LENGTH"] = length
    if chunked:
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
    return env


def test_a_body_with_content_length_is_one_read_of_exactly_that_many_bytes():
    stream = Recorded(b"x" * 3000 + b"beyond the body")
    assert read_body(environ(stream, "3000"), 1_500_000) == b"x" * 3000
    assert stream.sizes == [3000]  # no 64 KiB buffer, no second read to find the end


def test_a_content_length_over_the_limit_is_refused_before_reading():
    stream = Recorded(b"x" * 11)
    with pytest.raises(RequestEntityTooLarge):
        read_body(environ(stream, "11"), 10)
    assert stream.sizes == []
    assert read_body(environ(Recorded(b"x" * 10), "10"), 10) == b"x" * 10  # at the limit: read


@pytest.mark.parametrize("length", ["0", "", "-5", "abc"], ids=["zero", "empty", "negative", "text"])
def test_a_zero_or_unreadable_content_length_is_an_empty_body(length):
    stream = Recorded(b"ignored")
    assert read_body(environ(stream, length), 100) == b""
    assert stream.sizes == []


def test_a_body_shorter_than_its_content_length_is_a_disconnected_client():
    with pytest.raises(ClientDisconnected):
        read_body(environ(Recorded(b"x" * 99), "100"), 1000)


def test_a_stream_that_fails_while_reading_is_a_disconnected_client():
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("connection reset")

    with pytest.raises(ClientDisconnected):
        read_body(environ(Broken(), "10"), 1000)


def test_a_chunked_body_is_read_to_its_end_within_the_limit_and_refused_over_it():
    assert read_body(environ(io.BytesIO(b"y" * 70_000), None, chunked=True), 70_000) == b"y" * 70_000
    with pytest.raises(RequestEntityTooLarge):
        read_body(environ(io.BytesIO(b"y" * 70_001), None, chunked=True), 70_000)


def test_without_content_length_or_a_terminated_stream_nothing_is_read():
    """A server that neither gives a length nor ends the stream: werkzeug's safe fallback, an empty body."""
    stream = Recorded(b"never read")
    assert read_body({"wsgi.input": stream}, 100) == b""
    assert stream.sizes == []


class Trickle(Recorded):
    """A socket-like stream: at most 7 bytes per read, whatever was asked."""

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(-1 if size is None else size)
        return io.BytesIO.read(self, 7 if size is None or size < 0 else min(size, 7))


def test_an_oversize_chunked_body_is_refused_after_reading_one_byte_past_the_limit():
    # a client streaming gigabytes costs the worker limit + 1 bytes of memory, not the whole body
    stream = Trickle(b"z" * 10_000)
    with pytest.raises(RequestEntityTooLarge):
        read_body(environ(stream, None, chunked=True), 100)
    assert stream.tell() == 101
    assert stream.sizes[0] == 101 and stream.sizes[-1] == 101 - 7 * 14  # each read asks only for what is left
