"""Who may use the operator routes (drift reset, the model's full provenance): nobody, unless ADMIN_ENABLED.

Why a bearer token and not the network: anyone who can call /predict could otherwise reset drift statistics and
hide drift forever, and a browser on the same machine could do it with a cross-site form post (a form cannot set
an Authorization header). The token comes from the environment only (on Cloud Run a Secret Manager secret), and
is compared in constant time.
"""

from __future__ import annotations

import hmac

from service.config import ServiceConfig
from service.errors import RequestError

_BEARER = "Bearer "


def is_admin(config: ServiceConfig, authorization: str | None) -> bool:
    """True when admin routes are enabled and the Authorization header carries the configured token."""
    if not config.admin_enabled or config.admin_token is None or not authorization:
        return False
    if not authorization.startswith(_BEARER):
        return False
    offered = authorization[len(_BEARER) :].strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(offered, config.admin_token.encode("utf-8", "surrogateescape"))


def require_admin(config: ServiceConfig, authorization: str | None) -> None:
    """Raise 403 when admin routes are off, 401 when the token is missing or wrong."""
    if not config.admin_enabled:
        raise RequestError(
            403,
            "admin_disabled",
            "this route is disabled: an operator enables it with ADMIN_ENABLED=true and an ADMIN_TOKEN secret "
            "in the service's environment, then calls it with 'Authorization: Bearer <token>'",
        )
    if not is_admin(config, authorization):
        raise RequestError(401, "unauthorized", "this route needs 'Authorization: Bearer <ADMIN_TOKEN>'")
