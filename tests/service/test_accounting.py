"""What the accounting middleware takes from the client: closed label sets, a strict request id, a trusted hop."""

import re

import pytest

from service.accounting import client_ip, method_label, request_id


def test_methods_outside_the_standard_set_share_one_label():
    assert method_label("GET") == "GET" and method_label("PATCH") == "PATCH"
    assert {method_label(f"QX{i}") for i in range(100)} == {"other"}


@pytest.mark.parametrize("good", ["abc", "req-123", "4bf92f3577b34da6a3ce929d0e0e4736", "a.b:c_d-e"])
def test_a_well_formed_request_id_is_kept(good):
    assert request_id(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "x\ny", "<script>", "ids,with,commas", "ü"])
def test_anything_else_is_replaced_by_a_generated_id(bad):
    assert re.fullmatch(r"[0-9a-f]{16}", request_id(bad))


@pytest.mark.parametrize(
    "forwarded,hops,expected",
    [
        ("6.6.6.6, 203.0.113.7", 1, "203.0.113.7"),  # Cloud Run appends the address it saw
        ("6.6.6.6, 203.0.113.7, 35.191.0.1", 2, "203.0.113.7"),  # a load balancer in front adds one more
        ("6.6.6.6, 203.0.113.7", 0, "10.0.0.9"),  # no trusted hop: the peer
        ("203.0.113.7", 2, ""),  # fewer entries than trusted hops: nothing trustworthy
        ("6.6.6.6, not-an-address", 1, ""),
        (None, 1, "10.0.0.9"),
        ("2001:db8::1", 1, "2001:db8::1"),
    ],
)
def test_the_client_address_is_the_last_trusted_hop(forwarded, hops, expected):
    assert client_ip(forwarded, "10.0.0.9", hops) == expected
