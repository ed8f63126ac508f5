"""The twin's Cloud Monitoring: the v3 MetricService that google-cloud-monitoring's MetricServiceClient calls, over
gRPC with TLS, as against Google.

Why gRPC: google-cloud-monitoring 2.x ships gRPC transports only (`transport="rest"` is a KeyError), so a REST fake
cannot be reached by the real client. This is a real gRPC server (grpcio, the monitoring_v3 protos) behind a
certificate made for 127.0.0.1; the client trusts it through gRPC's own `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` and finds
it through `client_options={"api_endpoint": "127.0.0.1:PORT"}` (trainer.cloud.endpoints reads
MONITORING_EMULATOR_HOST). The client's call credentials (the twin's token) ride on the TLS channel as on Google's.
What it answers: CreateTimeSeries (points kept, as a custom metric's writer sends them) and ListTimeSeries, whose
filter's `key = "value"` clauses (joined by AND) select series by metric.type, resource.type, metric.labels.* and
resource.labels.*. Series are answered as stored: the request's aggregation is recorded, not computed, so seed one
series per aligned figure.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.wire import Request

_CLAUSE = re.compile(r'([\w.]+)\s*=\s*"([^"]*)"')
SERVICE = "google.monitoring.v3.MetricService"


def _field(series: Any, key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head not in ("metric", "resource"):
        return None
    part = getattr(series, head)
    if rest == "type":
        return str(part.type)
    if rest.startswith("labels."):
        return part.labels.get(rest.removeprefix("labels."))
    return None


def certificate(directory: Path) -> tuple[bytes, bytes, Path]:
    """A key and a self-signed certificate for 127.0.0.1 and localhost; returns (key PEM, cert PEM, cert file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fmnist twin")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "twin-monitoring-ca.pem"
    path.write_bytes(cert_pem)
    return key_pem, cert_pem, path


@dataclass
class FakeMonitoring:
    requests: list[Request] = field(default_factory=list)
    series: dict[str, list[Any]] = field(default_factory=dict)  # "projects/p" -> monitoring_v3.TimeSeries
    endpoint: str = ""  # host:port, the api_endpoint of MetricServiceClient
    ca_file: Path | None = None  # for GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seed_series(self, project: str, metric: dict[str, Any], resource: dict[str, Any], values: list[float]) -> None:
        """One series (metric {type, labels}, monitored resource {type, labels}) with one point per value."""
        from google.cloud import monitoring_v3

        points = [{"interval": {"end_time": {"seconds": 1_767_225_600}}, "value": {"double_value": v}} for v in values]
        series = monitoring_v3.TimeSeries(metric=metric, resource=resource, points=points)
        self.series.setdefault(f"projects/{project}", []).append(series)

    def environment(self) -> dict[str, str]:
        return {"MONITORING_EMULATOR_HOST": self.endpoint, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(self.ca_file)}

    def _record(self, method: str, request: Any, context: Any) -> None:
        metadata = dict(context.invocation_metadata())
        body = type(request).to_dict(request)
        query = {"filter": request.filter} if hasattr(request, "filter") else {}
        self.requests.append(Request("RPC", request.name, method, query, body, metadata.get("authorization", "")))

    def list_time_series(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud import monitoring_v3

        with self._lock:
            self._record("ListTimeSeries", request, context)
            clauses = _CLAUSE.findall(request.filter)
            if not any(key == "metric.type" for key, _ in clauses):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "filter must name a metric.type")
            found = [s for s in self.series.get(request.name, []) if all(_field(s, k) == v for k, v in clauses)]
            return monitoring_v3.ListTimeSeriesResponse(time_series=found)

    def create_time_series(self, request: Any, context: Any) -> Any:
        from google.protobuf import empty_pb2

        with self._lock:
            self._record("CreateTimeSeries", request, context)
            self.series.setdefault(request.name, []).extend(request.time_series)
            return empty_pb2.Empty()


@contextmanager
def serve(directory: Path) -> Iterator[FakeMonitoring]:
    """Start it on 127.0.0.1 at an ephemeral port with TLS; its CA file goes in `directory`."""
    import grpc
    from google.cloud import monitoring_v3
    from google.protobuf import empty_pb2

    fake = FakeMonitoring()
    key, cert, fake.ca_file = certificate(directory)
    handlers = {
        "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
            fake.list_time_series,
            request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
            response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize,
        ),
        "CreateTimeSeries": grpc.unary_unary_rpc_method_handler(
            fake.create_time_series,
            request_deserializer=monitoring_v3.CreateTimeSeriesRequest.deserialize,
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    fake.endpoint = f"127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.stop(grace=None)
