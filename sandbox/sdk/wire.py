"""The wire between an analysis script (client) and the broker (server).

Newline-delimited JSON over a unix stream socket, one request and one response per line::

    -> {"id": 1, "method": "query", "params": {...}}
    <- {"id": 1, "ok": true, "result": ...}
    <- {"id": 1, "ok": false, "error": {"code": "...", "message": "...", "hint": "..."}}

Methods and their ``params``:

=========== ============================================ ===================================
method      params                                       result
=========== ============================================ ===================================
query       the query document itself (kind, dataset...) DP answer (columns, rows, epsilon...)
preview     the query document itself                    cost and expected accuracy, no spend
budget      ``{}`` or ``{"dataset": name}``              ``{"epsilon": x, "delta": y}``
datasets    ``{}``                                       list of datasets the grant covers
describe    ``{"dataset": name}``                        public schema of one dataset
history     ``{}``                                       previous queries of the grant
=========== ============================================ ===================================

Rules: each message (line) is at most ``MAX_MESSAGE`` bytes including its newline; JSON is
strict (no NaN/Infinity, a non-finite number is sent as ``null``); plain JSON types only, never
pickles or code. Errors on the wire itself use the codes ``bad_request``, ``too_large``,
``unknown_method``, ``busy`` and ``internal``.

This module is shared by ``sandbox.sdk`` (in the container) and ``sandbox.broker_socket`` (on the
host); it imports only the standard library.
"""
from __future__ import annotations

import json
import math
import socket
from typing import Any

MAX_MESSAGE = 1024 * 1024  # bytes per line, each way, newline included
METHODS = frozenset({"query", "preview", "budget", "datasets", "describe", "history"})
DEFAULT_TIMEOUT = 300.0    # seconds the client waits for one answer (DP queries can be slow)
CONNECT_TIMEOUT = 10.0


class WireError(Exception):
    """A message that breaks the protocol. ``code`` is the wire error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _reject_constant(name: str) -> Any:
    raise WireError("bad_request", f"{name} is not valid JSON")


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def encode(message: dict) -> bytes:
    """One line of strict JSON, newline-terminated; WireError if too large or not plain JSON."""
    try:
        text = json.dumps(_finite(message), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise WireError("internal", f"message is not plain JSON ({type(exc).__name__})") from None
    data = text.encode("utf-8") + b"\n"
    if len(data) > MAX_MESSAGE:
        raise WireError("too_large", f"message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    return data


def decode(line: bytes) -> dict:
    """Parse one line (with or without its newline) into a JSON object, strictly."""
    if len(line) > MAX_MESSAGE:
        raise WireError("too_large", f"message is over the {MAX_MESSAGE}-byte limit")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("bad_request", "message is not UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except WireError:
        raise
    except (ValueError, RecursionError):
        raise WireError("bad_request", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise WireError("bad_request", "message must be a JSON object")
    return obj


def make_request(request_id: int, method: str, params: dict | None = None) -> dict:
    return {"id": request_id, "method": method, "params": params or {}}


def parse_request(obj: dict) -> tuple[int | None, str, dict]:
    """(id, method, params) of a request object, or WireError naming what is wrong."""
    request_id = obj.get("id")
    if type(request_id) is not int or request_id < 0:
        raise WireError("bad_request", "request `id` must be a non-negative integer")
    method = obj.get("method")
    if not isinstance(method, str):
        raise WireError("bad_request", "request `method` must be a string")
    if method not in METHODS:
        raise WireError("unknown_method", f"unknown method {method[:40]!r}; known: {', '.join(sorted(METHODS))}")
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise WireError("bad_request", "request `params` must be a JSON object")
    return request_id, method, params


def ok_response(request_id: int | None, result: Any) -> dict:
    return {"id": request_id, "ok": True, "result": result}


def error_response(request_id: int | None, code: str, message: str, hint: str = "") -> dict:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message, "hint": hint}}


class LineReader:
    """Reads newline-terminated messages from a socket, never buffering more than the cap."""

    def __init__(self, sock: socket.socket, limit: int = MAX_MESSAGE) -> None:
        self.sock = sock
        self.limit = limit
        self.buf = bytearray()

    def read_line(self) -> bytes | None:
        """The next line (newline stripped); None at a clean end of stream.

        WireError("too_large") once a line grows past the limit (the stream is then out of step:
        the caller should answer and close). socket.timeout propagates.
        """
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                if nl + 1 > self.limit:
                    raise WireError("too_large", f"message is over the {self.limit}-byte limit")
                line = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                return line
            if len(self.buf) >= self.limit:
                raise WireError("too_large", f"message is over the {self.limit}-byte limit")
            chunk = self.sock.recv(min(65536, self.limit + 1 - len(self.buf)))
            if not chunk:
                if self.buf:
                    raise WireError("bad_request", "connection closed in the middle of a message")
                return None
            self.buf += chunk
