"""A download whose body does not match the CRC32C that Cloud Storage sent with it is read again, over the wire.

The google-cloud-storage client checks every download against the object's checksum and raises DataCorruption on
a mismatch without retrying; fake-gcs-server tears a read that races a write (found by the concurrent-increment test
in test_storage.py), and a real network can tear one too. The server here answers like Cloud Storage's download
endpoint and corrupts the first N answers, so the real client does the checking.
"""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google_crc32c
import pytest

import storage

BODY = b'{"aliases": {"champion": "v1"}}'


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


class _TearingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, torn: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.torn = torn
        self.paths: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: _TearingServer

    def do_GET(self) -> None:
        if not self.path.startswith("/download/"):  # the client reads the bucket's metadata once
            self._send(json.dumps({"kind": "storage#bucket", "name": "models"}).encode(), {})
            return
        self.server.paths.append(self.path)
        body = BODY
        if len(self.server.paths) <= self.server.torn:
            body = BODY[:-3] + b"XX}"  # same length, other bytes: the header's checksum no longer fits
        self._send(body, {"X-Goog-Hash": f"crc32c={_crc32c(BODY)}", "X-Goog-Generation": "1234"})

    def _send(self, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tearing(monkeypatch):
    servers: list[_TearingServer] = []

    def start(torn: int) -> _TearingServer:
        server = _TearingServer(torn)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_address[1]}")
        storage.reset_client()
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
    storage.reset_client()


@pytest.mark.parametrize("torn", [1, 2])
def test_a_torn_download_is_read_again_and_the_whole_body_returned(tearing, torn):
    server = tearing(torn)
    assert storage.read_bytes("gs://models/registry/index.json") == BODY
    assert server.paths == ["/download/storage/v1/b/models/o/registry%2Findex.json?alt=media"] * (torn + 1)


def test_a_versioned_read_gets_the_generation_of_the_good_download(tearing):
    server = tearing(2)
    versioned = storage.read_versioned("gs://models/registry/index.json")
    assert (versioned.data, versioned.token) == (BODY, 1234)
    assert len(server.paths) == 3


def test_three_torn_downloads_in_a_row_are_one_storage_error_naming_the_object_and_the_fix(tearing):
    server = tearing(3)
    with pytest.raises(storage.StorageError) as caught:
        storage.read_bytes("gs://models/registry/index.json")
    assert str(caught.value) == (
        "gs://models/registry/index.json: 3 downloads in a row did not match the object's checksum; "
        "check the network path to Cloud Storage (a proxy rewriting bodies?) and retry"
    )
    assert len(server.paths) == 3
    assert type(caught.value.__cause__).__name__ == "DataCorruption"  # the client's own report stays readable
