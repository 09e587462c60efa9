"""Who is calling: ``Authorization: Bearer <token>`` → an ``Actor``; role checks per route.

No header means the public (role ``public``). A header that is not a valid token is a 401
(``Users.authenticate`` audits it as ``auth.failed``). A role that a route does not allow is a
403, and a request for another user's object is a 404; both are audited as
``request.refused``.
"""
from __future__ import annotations

import hashlib
from http import HTTPStatus
from functools import wraps
from typing import Any, Callable

from apiflask.scaffold import _annotate
from flask import current_app, g, request

from sandbox.actors import Actor
from sandbox.errors import AuthFailed, Forbidden, NotFound

PUBLIC_ACTOR = Actor("anonymous", "public")
ROLES = ("operator", "provider", "analyst", "reviewer", "public")
ANY_USER = ("operator", "provider", "analyst", "reviewer")

#: Error statuses documented on every operation (the spec must list what can come back).
COMMON_ERRORS = [400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500]


def services():  # type: ignore[no-untyped-def]
    return current_app.extensions["sandbox.services"]


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def actor() -> Actor:
    """The caller, authenticated once per request (public without a token)."""
    found = g.get("sandbox_actor")
    if found is None:
        token = _bearer()
        if token is None:
            found = PUBLIC_ACTOR
        else:
            found = services().users.authenticate(token or None, source=request.remote_addr or "")
        g.sandbox_actor = found
    return found


def rate_key() -> str:
    """Rate limits count per token (its hash: no database look-up), else per address."""
    header = request.headers.get("Authorization")
    if header:
        return "tok:" + hashlib.sha256(header.encode("utf-8", "replace")).hexdigest()[:24]
    return "ip:" + (request.remote_addr or "?")


def record_refusal(status: int, code: str, reason: str) -> None:
    who = g.get("sandbox_actor") or PUBLIC_ACTOR
    services().audit.append(
        actor=who.name, role=who.role, action="request.refused", outcome=code,
        objects={"method": request.method, "path": request.path[:300]},
        details={"status": status, "reason": reason[:500]},
    )


def requires(*roles: str, status: int = 200, extra: list[int] | None = None) -> Callable:
    """Allow only these roles (``"public"`` lets anyone in, token or not)."""
    for role in roles:
        assert role in ROLES, role

    def decorator(f: Callable) -> Callable:
        @wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = actor()
            if "public" in roles or who.role in roles:
                return f(*args, **kwargs)
            if who.role == "public":
                record_refusal(401, AuthFailed.code, "no API token")
                raise AuthFailed("this needs an API token",
                                 "send 'Authorization: Bearer sbx_…'; an operator makes tokens with "
                                 "`sandbox token create USER`")
            article = "an" if who.role[0] in "aeiou" else "a"
            raise Forbidden(f"{article} {who.role} may not do this ({request.method} {request.path})",
                            f"this is for: {', '.join(r for r in roles)}")

        given = dict(getattr(f, "_spec", {}).get("responses") or {})
        responses = {code: HTTPStatus(code).phrase for code in [status] + (extra or []) + COMMON_ERRORS}
        responses.update(given)
        _annotate(wrapper, responses=responses,
                  security=None if "public" in roles else "BearerAuth",
                  extensions={"x-roles": list(roles)})
        wrapper._sandbox_roles = roles  # type: ignore[attr-defined]
        return wrapper

    return decorator


def hidden(what: str, ident: str, hint: str) -> NotFound:
    """The 404 for another user's object: same words as for one that does not exist; audited."""
    err = NotFound(f"no {what} {ident}", hint)
    record_refusal(404, "not_owner", f"{what} {ident} belongs to another user")
    return err


def require_own(what: str, ident: str, owner: str | None, hint: str, role: str = "analyst") -> None:
    """A caller of ``role`` sees only its own objects; others' are ``hidden``."""
    who = actor()
    if who.role == role and owner != who.name:
        raise hidden(what, ident, hint)

