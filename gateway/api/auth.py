"""Who is calling: the bearer token of each request, resolved to a tenant."""

from __future__ import annotations

import hmac

from flask import request

from gateway.api.errors import ApiError
from gateway.services import services
from gateway.tokens import ADMIN_TENANT

_TENANT_KEY = "computethis.tenant"  # where the request's tenant is kept, in its environ


def authenticate(public_endpoints: frozenset[str]) -> None:
    """Resolve the bearer token to a tenant: the admin token, or a tenant's token.

    Runs before every request (of the whole app, so unknown paths answer 401 too);
    the endpoints in ``public_endpoints`` need no token. 401 for a missing or wrong one.
    """
    if request.endpoint in public_endpoints:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    shared = services()
    tenant = None
    if scheme.lower() == "bearer" and token:
        if hmac.compare_digest(token.encode(), shared.config.token.encode()):
            tenant = ADMIN_TENANT
        else:
            tenant = shared.tokens.tenant_for(token)
    if tenant is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong token: send 'Authorization: Bearer TOKEN' (the token "
            "`computethis up` printed, or one from `computethis token create`)",
            {"WWW-Authenticate": 'Bearer realm="computethis"'},
        )
    request.environ[_TENANT_KEY] = tenant


def act_as(name: str) -> None:
    """Make ``name`` the current request's tenant: for requests authenticated another
    way than a bearer token (the dashboard's session cookie, :mod:`gateway.dashboard`)."""
    request.environ[_TENANT_KEY] = name


def tenant() -> str:
    """The tenant the current request authenticated as."""
    return request.environ[_TENANT_KEY]


def is_admin() -> bool:
    """True when the request used the admin token (sees every tenant's jobs)."""
    return tenant() == ADMIN_TENANT
