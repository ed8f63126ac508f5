"""The operator routes' token check, exactly: who is let in, and the 403 or 401 sentence a refused caller reads.

In-process on ServiceConfig (what both the Flask handlers and the predict route pass to service/admin.py)."""

from __future__ import annotations

import pytest

from service.admin import is_admin, require_admin
from service.config import ServiceConfig
from service.errors import RequestError

TOKEN = "operator-secret-0123456789abcdef"
ON = ServiceConfig(model_uri="unused", admin_enabled=True, admin_token=TOKEN)


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}", f"Bearer   {TOKEN}  ", f"Bearer {TOKEN}\t"],  # blanks around the token are not part of it
)
def test_the_configured_token_after_bearer_is_let_in(header):
    assert is_admin(ON, header) is True
    require_admin(ON, header)  # no error


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        TOKEN,  # no scheme
        f"bearer {TOKEN}",  # the scheme as the service documents it: 'Bearer ', case included
        f"Basic {TOKEN}",
        f"Bearer{TOKEN}",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        "Bearer ",
    ],
)
def test_anything_else_is_refused_with_the_401_sentence(header):
    assert is_admin(ON, header) is False
    with pytest.raises(RequestError) as refused:
        require_admin(ON, header)
    assert (refused.value.status, refused.value.reason, refused.value.detail) == (
        401,
        "unauthorized",
        "this route needs 'Authorization: Bearer <ADMIN_TOKEN>'",
    )


def test_routes_off_refuse_even_the_right_token_with_the_403_sentence():
    off = ServiceConfig(model_uri="unused", admin_enabled=False, admin_token=TOKEN)
    assert is_admin(off, f"Bearer {TOKEN}") is False
    with pytest.raises(RequestError) as refused:
        require_admin(off, f"Bearer {TOKEN}")
    assert (refused.value.status, refused.value.reason, refused.value.detail) == (
        403,
        "admin_disabled",
        "this route is disabled: an operator enables it with ADMIN_ENABLED=true and an ADMIN_TOKEN secret in the "
        "service's environment, then calls it with 'Authorization: Bearer <token>'",
    )


def test_enabled_without_a_token_lets_nobody_in():
    """from_env refuses this configuration; a config built otherwise (with_changes) must still not open the routes."""
    tokenless = ON.with_changes(admin_token=None)
    assert is_admin(tokenless, "Bearer ") is False
    assert is_admin(tokenless, "Bearer None") is False
    with pytest.raises(RequestError) as refused:
        require_admin(tokenless, "Bearer None")
    assert refused.value.status == 401


def test_a_token_read_from_undecodable_environment_bytes_is_compared_byte_for_byte():
    """os.environ decodes a value that is not UTF-8 with surrogateescape: such a token must neither crash the check
    (UnicodeEncodeError: a 500 on every operator call) nor match a header of other bytes."""
    raw = "operator-secret-0123456789-\udcff"  # the byte 0xff as os.environ holds it
    config = ServiceConfig(model_uri="unused", admin_enabled=True, admin_token=raw)
    assert is_admin(config, "Bearer operator-secret-0123456789-\u00ff") is False  # latin-1 ÿ is 0xc3 0xbf in UTF-8
    assert is_admin(config, f"Bearer {raw}") is True
