"""Fixtures of the SDK tests: a real broker socket answering with canned DP-shaped answers."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from sandbox import broker_socket

from .sdk_helpers import CannedBroker


@pytest.fixture
def short_tmp():
    # unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="sbx") as d:
        yield Path(d)


@pytest.fixture
def broker(short_tmp, monkeypatch):
    """A served CannedBroker; SANDBOX_SOCKET and SANDBOX_OUTPUT point at it."""
    handler = CannedBroker()
    sock = short_tmp / "broker.sock"
    out = short_tmp / "out"
    out.mkdir()
    server = broker_socket.serve(sock, handler, max_connections=4, idle_timeout=30)
    monkeypatch.setenv("SANDBOX_SOCKET", str(sock))
    monkeypatch.setenv("SANDBOX_OUTPUT", str(out))
    monkeypatch.delenv("SANDBOX_MOCK", raising=False)
    handler.server = server
    handler.socket_path = sock
    handler.output = out
    try:
        yield handler
    finally:
        server.close()

