"""The script's side of the socket: one connection to the broker, one request at a time."""
from __future__ import annotations

import os
import socket
import threading
from typing import Any

from sandbox.sdk import wire
from sandbox.sdk.errors import BrokerUnavailable, error_from_wire

DEFAULT_SOCKET = "/job/broker.sock"


def socket_path() -> str:
    return os.environ.get("SANDBOX_SOCKET") or DEFAULT_SOCKET


def _timeout() -> float:
    try:
        value = float(os.environ.get("SANDBOX_TIMEOUT", ""))
        return value if value > 0 else wire.DEFAULT_TIMEOUT
    except ValueError:
        return wire.DEFAULT_TIMEOUT


class BrokerClient:
    """A blocking client. A failed exchange drops the connection; the next call reconnects."""

    def __init__(self, path: str, timeout: float = wire.DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: wire.LineReader | None = None
        self._next_id = 1
        self._lock = threading.Lock()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(min(wire.CONNECT_TIMEOUT, self.timeout))
        try:
            sock.connect(self.path)
        except (OSError, socket.timeout) as exc:
            sock.close()
            raise BrokerUnavailable(
                f"the broker could not be reached at {self.path} ({type(exc).__name__})",
                "outside a sandbox job, run the script with `sandbox run --mock`",
            ) from None
        sock.settimeout(self.timeout)
        self._sock, self._reader = sock, wire.LineReader(sock)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock, self._reader = None, None

    def call(self, method: str, params: dict | None = None) -> Any:
        """The ``result`` of one request, or the SDK exception for the broker's error."""
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
            try:
                data = wire.encode(wire.make_request(request_id, method, params))
            except wire.WireError as exc:
                from sandbox.sdk.errors import QueryInvalid
                raise QueryInvalid(f"the request cannot be sent: {exc.message}",
                                   "ask for fewer groups or smaller values") from None
            if self._sock is None:
                self._connect()
            assert self._sock is not None and self._reader is not None
            try:
                self._sock.sendall(data)
                line = self._reader.read_line()
                if line is None:
                    raise wire.WireError("bad_request", "the broker closed the connection")
                response = wire.decode(line)
            except socket.timeout:
                self.close()
                raise BrokerUnavailable(
                    f"the broker did not answer within {self.timeout:g} s",
                    "try a smaller query; the operator can raise SANDBOX_TIMEOUT",
                ) from None
            except (OSError, wire.WireError) as exc:
                self.close()
                reason = exc.message if isinstance(exc, wire.WireError) else type(exc).__name__
                raise BrokerUnavailable(f"the connection to the broker failed: {reason}",
                                        "run the job again; if it persists, tell the operator") from None
            if response.get("id") != request_id and response.get("id") is not None:
                self.close()
                raise BrokerUnavailable("the broker answered a different request", "tell the operator")
            if response.get("ok") is True and "result" in response:
                return response["result"]
            if response.get("ok") is False:
                raise error_from_wire(response.get("error"))
            self.close()
            raise BrokerUnavailable("the broker sent a malformed response", "tell the operator")


_client: BrokerClient | None = None
_client_lock = threading.Lock()


def default_client() -> BrokerClient:
    """The client for ``$SANDBOX_SOCKET`` (re-created if the variable changes)."""
    global _client
    with _client_lock:
        path, timeout = socket_path(), _timeout()
        if _client is None or _client.path != path or _client.timeout != timeout:
            if _client is not None:
                _client.close()
            _client = BrokerClient(path, timeout)
        return _client


def call(method: str, params: dict | None = None) -> Any:
    return default_client().call(method, params)
