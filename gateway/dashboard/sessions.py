"""Who is looking: signing in to the dashboard with a token, the session cookie it
gives, signing out, and the CSRF token every state-changing request must carry.

Sessions live in the gateway process's memory (a restart signs everyone out). A
session keeps the token it was opened with and checks it again on every request, so
revoking a tenant's token (``computethis token revoke``) ends its sessions at once.
The cookie holds only a random session id: HttpOnly, SameSite=Strict, Secure when the
gateway serves HTTPS, and it expires with the session.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Response, redirect, render_template, request, url_for

from gateway.api.auth import act_as
from gateway.api.errors import ApiError
from gateway.services import services
from gateway.tokens import ADMIN_TENANT

COOKIE = "computethis_session"
CSRF_FIELD = "csrf"  # the form field of the CSRF token
CSRF_HEADER = "X-CSRF-Token"  # or this header (the dashboard's scripts)
LIFETIME = 8 * 3600.0  # seconds a session lasts after signing in
MAX_SESSIONS = 10_000  # the oldest is dropped beyond this
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_KEY = "computethis.session"  # where the request's session is kept, in its environ


@dataclass
class Session:
    """One signed-in browser."""

    id: str
    tenant: str
    token: str
    csrf: str
    expires: float


class Sessions:
    """The gateway's open sessions, by id (thread-safe)."""

    def __init__(self, lifetime: float = LIFETIME, limit: int = MAX_SESSIONS) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._lock = threading.Lock()
        self._open: OrderedDict[str, Session] = OrderedDict()

    def open(self, tenant: str, token: str) -> Session:
        """A new session of ``tenant``, signed in with ``token``."""
        session = Session(
            secrets.token_urlsafe(32),
            tenant,
            token,
            secrets.token_urlsafe(32),
            time.time() + self.lifetime,
        )
        with self._lock:
            self._open[session.id] = session
            while len(self._open) > self.limit:
                self._open.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The open, unexpired session ``session_id``, or None."""
        if not session_id:
            return None
        with self._lock:
            session = self._open.get(session_id)
            if session is not None and session.expires <= time.time():
                del self._open[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        """End a session (signing out)."""
        with self._lock:
            self._open.pop(session_id or "", None)


def still_open(sessions: Sessions, session_id: str) -> bool:
    """Whether session ``session_id`` is still open and its token still valid (for a
    stream, which checks at each event; in a request or app context)."""
    session = sessions.get(session_id)
    if session is not None and tenant_of(session.token) != session.tenant:
        sessions.close(session.id)
        session = None
    return session is not None


def tenant_of(token: str) -> str | None:
    """The tenant a token signs in as: the admin, a tenant, or None."""
    shared = services()
    if not token:
        return None
    if hmac.compare_digest(token.encode(), shared.config.token.encode()):
        return ADMIN_TENANT
    return shared.tokens.tenant_for(token)


def current() -> Session:
    """The current request's session (set by :func:`require_session`)."""
    return request.environ[_SESSION_KEY]


def page_globals() -> dict[str, Any]:
    """What every template may use: the viewer (None before signing in) and the
    session's CSRF token, for the forms that change something."""
    session = request.environ.get(_SESSION_KEY)
    return {
        "viewer": session.tenant if session else None,
        "csrf_field": CSRF_FIELD,
        "csrf_token": session.csrf if session else "",
    }


def require_session(sessions: Sessions, public: frozenset[str]) -> Response | None:
    """Before each dashboard request: find its session (still valid: its token not
    revoked), make its tenant the request's, and check the CSRF token of a
    state-changing request. Without a session a page redirects to sign-in and a feed
    answers 401."""
    if request.endpoint in public:
        return None
    session = sessions.get(request.cookies.get(COOKIE))
    if session is not None and tenant_of(session.token) != session.tenant:
        sessions.close(session.id)  # the token was revoked
        session = None
    if session is None:
        if request.method in SAFE_METHODS and not is_feed():
            return redirect(url_for("dashboard.signin", next=request.full_path.rstrip("?")))
        raise ApiError(
            401,
            "signed_out",
            "you are not signed in to the dashboard (or your session expired): sign in again",
        )
    request.environ[_SESSION_KEY] = session
    act_as(session.tenant)
    if request.method not in SAFE_METHODS:
        sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise ApiError(
                403,
                "csrf_token_missing",
                "this request did not carry the page's CSRF token (an old page, or a "
                "request from another site): reload the page and try again",
            )
    return None


def is_feed() -> bool:
    """Whether the request is for a dashboard feed (JSON or events), not a page."""
    return request.path.startswith(url_for("dashboard.overview") + "feed/")


def signin_page() -> Any:
    """``GET /dashboard/signin``: the sign-in form."""
    return render_template("dashboard/signin.html", next=_next_path(), error=None)


def signin(sessions: Sessions) -> Any:
    """``POST /dashboard/signin``: check the token, open a session, set its cookie."""
    if not _same_origin():
        raise ApiError(
            403,
            "cross_origin",
            "sign-in must come from the dashboard's own page: open it and try again",
        )
    token = request.form.get("token", "").strip()
    tenant = tenant_of(token)
    if tenant is None:
        error = (
            "That token is not valid here. Use the token `computethis up` printed, or a "
            "tenant's token from `computethis token create`."
        )
        page = render_template("dashboard/signin.html", next=_next_path(), error=error)
        return page, 401
    session = sessions.open(tenant, token)
    response = redirect(_next_path())
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(sessions.lifetime),
        path=url_for("dashboard.overview"),
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def signout(sessions: Sessions) -> Any:
    """``POST /dashboard/signout``: end the session and drop its cookie."""
    sessions.close(current().id)
    response = redirect(url_for("dashboard.signin"))
    response.delete_cookie(
        COOKIE,
        path=url_for("dashboard.overview"),
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def _next_path() -> str:
    """Where to go after signing in: ``next`` if it is a dashboard path, else the
    overview (never another site)."""
    wanted = request.values.get("next", "")
    home = url_for("dashboard.overview")
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not wanted.startswith(home) or "\\" in wanted:
        return home
    return wanted


def _same_origin() -> bool:
    """False when the browser says the request comes from another origin."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host
