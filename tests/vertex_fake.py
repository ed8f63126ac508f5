"""Moved to twin/vertex.py (the twin's Vertex AI, also what `make twin-gcp` runs); kept so older imports work."""

from twin.vertex import FakeVertex, serve, vertex_over_the_wire
from twin.wire import Request

__all__ = ["FakeVertex", "Request", "serve", "vertex_over_the_wire"]
