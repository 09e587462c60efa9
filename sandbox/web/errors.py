"""Every error the API returns is ``{"error": {"code", "message", "hint"}}`` with a stable code.

``SandboxError`` subclasses map to HTTP statuses by class (the most specific class wins):

=====================  ======  ==========================================================
class                  status  why
=====================  ======  ==========================================================
AuthFailed             401     no token, or a malformed, unknown, expired or revoked one
Forbidden              403     the role (or ownership) does not allow the action
NotFound               404     also for other users' objects, so their existence never leaks
AlreadyExists          409
Conflict               409     the object's state does not allow it (e.g. approving twice)
BudgetExceeded         409     the request is allowed but conflicts with the grant's state
                               (its budget is spent): retrying will not help, a new grant will
PolicyRefused          403     the policy or grant does not allow it (incl. GrantInactive)
InvalidInput           422     well-formed request whose content is wrong (incl. the script
                               check, query and policy errors)
anything else          500     logged on the server; the body never holds a traceback
=====================  ======  ==========================================================

Transport-level problems have their own codes: ``malformed_json`` (400), ``bad_request``
(400), ``not_found`` (404, unknown route), ``method_not_allowed`` (405), ``too_large`` (413),
``unsupported_media_type`` (415), ``invalid_input`` (422, request validation: wrong types,
missing or unknown fields), ``rate_limited`` (429), ``internal`` (500).
"""
from __future__ import annotations

import logging
from typing import Any

from apiflask import HTTPError
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.errors import (
    AlreadyExists, AuthFailed, BudgetExceeded, Conflict, Forbidden, InvalidInput, NotFound, NotInitialised,
    PolicyRefused, SandboxError,
)
from sandbox.web.auth import record_refusal

log = logging.getLogger("sandbox.web")

STATUS_BY_CLASS: list[tuple[type[SandboxError], int]] = [
    (AuthFailed, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (AlreadyExists, 409),
    (Conflict, 409),
    (BudgetExceeded, 409),
    (PolicyRefused, 403),
    (InvalidInput, 422),
    (NotInitialised, 503),
]

HTTP_CODES = {
    400: ("bad_request", "the request could not be understood", "check it against /openapi.json"),
    401: ("unauthorized", "this needs an API token", "send 'Authorization: Bearer sbx_…'"),
    403: ("forbidden", "your role does not allow this", "ask an operator"),
    404: ("not_found", "there is no such resource", "see /openapi.json for the API's paths"),
    405: ("method_not_allowed", "this path does not accept that method",
          "see /openapi.json for the methods of each path"),
    406: ("not_acceptable", "cannot answer in the requested format", "accept application/json"),
    409: ("conflict", "the request conflicts with the current state", "reload and try again"),
    413: ("too_large", "the request body is too large", "send a smaller body; scripts are limited to 256 KiB"),
    415: ("unsupported_media_type", "the request body has the wrong content type",
          "send JSON with 'Content-Type: application/json' (dataset uploads: multipart/form-data)"),
    422: ("invalid_input", "the request is not valid", "check it against /openapi.json"),
    429: ("rate_limited", "too many requests for this token", "wait a moment and retry; see the Retry-After header"),
    500: ("internal", "the server failed unexpectedly; nothing was half-done",
          "try again; if it persists, tell the operator (the server log has the details)"),
}

#: The OpenAPI schema of every error body (used for every documented error response).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "hint"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "hint": {"type": "string"},
            },
            "additionalProperties": True,
        }
    },
}


class ApiError(SandboxError):
    """An error raised by the web layer itself with an explicit status."""

    def __init__(self, status: int, code: str, message: str, hint: str = "", **extra: Any) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code
        self.extra = extra


def status_of(err: SandboxError) -> int:
    if isinstance(err, ApiError):
        return err.status
    for cls, status in STATUS_BY_CLASS:
        if isinstance(err, cls):
            return status
    return 500


def body(code: str, message: str, hint: str = "", **extra: Any) -> dict:
    return {"error": {"code": code, "message": message, "hint": hint, **extra}}


def _response(status: int, payload: dict, headers: dict | None = None):  # type: ignore[no-untyped-def]
    resp = jsonify(payload)
    resp.status_code = status
    for k, v in (headers or {}).items():
        if k.lower() not in ("content-type", "content-length"):
            resp.headers[k] = v
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="sandbox"'
    return resp


def _validation_message(detail: Any) -> str:
    """'field x: Unknown field.; field y: Not a valid integer.' from marshmallow's messages."""
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            parts.append(f"{prefix}: {' '.join(value)}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        else:
            parts.append(f"{prefix}: {value}")

    for location, fields in (detail or {}).items():
        walk("", fields)
    return "; ".join(parts[:20]) or "the request is not valid"


def register(app: Flask) -> None:
    @app.errorhandler(SandboxError)
    def sandbox_error(err: SandboxError):  # type: ignore[no-untyped-def]
        status = status_of(err)
        if status >= 500:
            log.error("%s on %s %s: %s", err.code, request.method, request.path, err.message)
        if status in (401, 403) and not isinstance(err, AuthFailed):
            record_refusal(status, err.code, err.message)
        extra = getattr(err, "extra", {}) or {}
        return _response(status, body(err.code, err.message, err.hint, **extra))

    @app.errorhandler(HTTPError)
    def apiflask_error(err: HTTPError):  # type: ignore[no-untyped-def]
        status = err.status_code
        code, message, hint = HTTP_CODES.get(status, HTTP_CODES[400 if status < 500 else 500])
        if status == 422 or (status == 400 and err.detail):
            message = "the request is not valid: " + _validation_message(err.detail)
            code, status = "invalid_input", 422
        return _response(status, body(code, message, hint), dict(err.headers or {}))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):  # type: ignore[no-untyped-def]
        status = err.code or 500
        code, message, hint = HTTP_CODES.get(status, HTTP_CODES[400 if status < 500 else 500])
        data = getattr(err, "data", None)
        if status == 400 and isinstance(data, dict) and "messages" in data:
            # webargs: the body is not JSON at all
            code, message, hint = "malformed_json", "the request body is not valid JSON", \
                "send a JSON object with 'Content-Type: application/json'"
        if status == 429:
            message = f"too many requests: the limit is {err.description}"
        headers = dict(err.get_headers()) if status in (405, 429) else {}
        return _response(status, body(code, message, hint), headers)

    @app.errorhandler(Exception)
    def unexpected(err: Exception):  # type: ignore[no-untyped-def]
        log.exception("unexpected failure on %s %s", request.method, request.path)
        code, message, hint = HTTP_CODES[500]
        return _response(500, body(code, message, hint))
