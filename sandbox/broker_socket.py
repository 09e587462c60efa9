"""The broker's end of a job's socket: newline-delimited JSON over a unix stream socket.

One server per job. The runner mounts the folder holding the socket into the container (as
``/job/broker.sock``); the socket file is mode 0666 so the container's non-root user can
connect, and the per-job folder is what keeps other jobs out.

The handler is called as ``handler(method, params)`` and returns plain JSON. It raises
``sandbox.errors.SandboxError`` to refuse (sent as its ``to_dict()``); any other exception is
logged here, on the host, and the script gets only a generic ``internal`` error: never a
traceback, never a value.
"""
from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable

from sandbox.errors import SandboxError
from sandbox.sdk import wire

log = logging.getLogger(__name__)

Handler = Callable[[str, dict], Any]

INTERNAL_MESSAGE = "the broker failed to answer; the job's log has been kept for the operator"
ACCEPT_POLL_S = 0.2
DRAIN_S = 2.0
DRAIN_BYTES = 8 * 1024 * 1024


class SocketServer:
    """A running server; ``close()`` stops it, drops its connections and removes the socket."""

    def __init__(self, path: Path, handler: Handler, max_connections: int, idle_timeout: float) -> None:
        self.path = Path(path)
        self.handler = handler
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener = self._bind()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"broker-socket:{self.path.name}",
                                          daemon=True)
        self._acceptor.start()

    # -- life cycle ----------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        if self.path.is_symlink() or self.path.exists():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise FileExistsError(f"{self.path} exists and is not a socket")
            self.path.unlink()  # a stale socket from an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o666)
            sock.listen(max(1, self.max_connections))
            sock.settimeout(ACCEPT_POLL_S)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._acceptor.join(timeout=5)
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(timeout=5)
        try:
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        except FileNotFoundError:
            pass

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def __enter__(self) -> "SocketServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                log.exception("broker socket %s: accept failed", self.path)
                continue
            with self._lock:
                full = len(self._conns) >= self.max_connections
                if not full:
                    self._conns.add(conn)
            if full:
                self._refuse_busy(conn)
                continue
            t = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True,
                                 name=f"broker-conn:{self.path.name}")
            with self._lock:
                self._threads.add(t)
            t.start()

    def _refuse_busy(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(1.0)
            conn.sendall(wire.encode(wire.error_response(
                None, "busy", f"too many connections to the broker (at most {self.max_connections})",
                "use one connection per script")))
        except OSError:
            pass
        finally:
            conn.close()

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.settimeout(self.idle_timeout)
        reader = wire.LineReader(conn)
        try:
            while not self._closed.is_set():
                try:
                    line = reader.read_line()
                except socket.timeout:
                    log.info("broker socket %s: connection idle for %ss, closed", self.path, self.idle_timeout)
                    return
                except wire.WireError as exc:  # too large, or cut mid-message: out of step, close
                    self._send(conn, wire.error_response(None, exc.code, exc.message,
                                                         "keep each message under 1 MiB"))
                    self._drain(conn)
                    return
                if line is None:
                    return
                if not line.strip():
                    continue
                response = self._answer(line)
                if not self._send(conn, response):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        """Half-close and discard what the peer is still sending (bounded), so that closing does
        not reset the connection before the peer has read our error."""
        try:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(DRAIN_S)
            deadline = time.monotonic() + DRAIN_S
            left = DRAIN_BYTES
            while left > 0 and time.monotonic() < deadline:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _send(self, conn: socket.socket, response: dict) -> bool:
        try:
            data = wire.encode(response)
        except wire.WireError as exc:
            if exc.code == "too_large":
                data = wire.encode(wire.error_response(
                    response.get("id"), "too_large", "the answer is over the 1 MiB message limit",
                    "ask for fewer groups, or split the query"))
            else:
                log.error("broker socket %s: answer to request %s is not plain JSON: %s",
                          self.path, response.get("id"), exc.message)
                data = wire.encode(wire.error_response(response.get("id"), "internal", INTERNAL_MESSAGE))
        try:
            conn.sendall(data)
            return True
        except OSError:
            return False

    def _answer(self, line: bytes) -> dict:
        request_id: int | None = None
        try:
            obj = wire.decode(line)
            raw_id = obj.get("id")
            if type(raw_id) is int and raw_id >= 0:
                request_id = raw_id
            request_id, method, params = wire.parse_request(obj)
        except wire.WireError as exc:
            return wire.error_response(request_id, exc.code, exc.message,
                                       'send {"id": n, "method": ..., "params": {...}} on one line')
        try:
            result = self.handler(method, params)
        except SandboxError as err:
            log.info("broker socket %s: %s refused (%s)", self.path, method, err.code)
            d = err.to_dict()
            return wire.error_response(request_id, d["code"], d["message"], d.get("hint", ""))
        except Exception:
            log.exception("broker socket %s: handler failed on %s request %s", self.path, method, request_id)
            return wire.error_response(request_id, "internal", INTERNAL_MESSAGE)
        return wire.ok_response(request_id, result)


def serve(path: Path, handler: Handler, *, max_connections: int = 4, idle_timeout: float = 600.0) -> SocketServer:
    """Listen on unix socket ``path`` (mode 0666) and answer requests with ``handler`` in threads."""
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    if idle_timeout <= 0:
        raise ValueError("idle_timeout must be positive")
    return SocketServer(Path(path), handler, max_connections, idle_timeout)
