"""Property-based API tests: schemathesis generates requests from the service's own /openapi.json and sends them
to the live gunicorn process; every answer must be documented, match its schema, and never be a 5xx.

Why strategies rather than schemathesis' pytest plugin: the plugin's lazy fixture loading does not work with the
pytest version here; one test per operation and generation mode, bounded by max_examples, does the same work.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.service.conftest import ADMIN

OPERATIONS = [
    ("POST", "/predict"),
    ("GET", "/health"),
    ("GET", "/v1/model"),
    ("GET", "/monitoring/drift"),
    ("GET", "/monitoring/rollout"),
    ("POST", "/monitoring/drift/reset"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/v1/samples/random"),
    ("POST", "/feedback"),
    ("GET", "/monitoring/accuracy"),
]


@pytest.fixture(scope="session")
def api_schema(live_server):
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


def test_every_route_is_described(api_schema):
    """Everything but /openapi.json itself, which schemathesis leaves out of the operations it tests."""
    described = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert described == set(OPERATIONS)


CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS]
CASES.append(("POST", "/predict", GenerationMode.NEGATIVE))  # the operations with inputs to get wrong
CASES.append(("POST", "/feedback", GenerationMode.NEGATIVE))


@pytest.mark.slow  # hypothesis over HTTP: ~11 s for the module, dealt first under -n 2
@pytest.mark.parametrize("method,path,mode", CASES)
def test_operation_conforms_to_its_description(api_schema, live_server, method, path, mode):
    operation = api_schema[path][method]
    examples = 30 if path == "/predict" else 5
    # A schema-valid predict body can still be invalid: JSON Schema cannot say "a multiple of 784 bytes" or "a
    # decodable PNG". The parser's own hypothesis tests show that every valid pixel list is accepted.
    # A schema-valid label names a request id that was never made here: 404 unknown_request_id, as documented.
    excluded = [positive_data_acceptance] if path in ("/predict", "/feedback") else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        headers = ADMIN if path == "/monitoring/drift/reset" else None  # the operator route needs its token
        case.call_and_validate(base_url=live_server.url, excluded_checks=excluded, headers=headers)

    check()
