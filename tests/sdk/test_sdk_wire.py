"""The wire protocol over a real unix socket served by sandbox.broker_socket."""
from __future__ import annotations

import json
import logging
import socket
import stat
import time

import pytest

from sandbox import broker_socket
from sandbox.errors import PolicyRefused
from sandbox.sdk import wire
from sandbox.sdk.client import BrokerClient
from sandbox.sdk.errors import BrokerUnavailable, PolicyRefused as SdkPolicyRefused


def connect(path) -> tuple[socket.socket, wire.LineReader]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(path))
    return s, wire.LineReader(s)


def exchange(s, reader, raw: bytes) -> dict:
    s.sendall(raw)
    line = reader.read_line()
    assert line is not None, "server closed the connection"
    return json.loads(line)


@pytest.fixture
def served(short_tmp):
    calls = []

    def handler(method, params):
        calls.append((method, params))
        if method == "describe" and params.get("dataset") == "secret":
            raise PolicyRefused("dataset secret is not covered by this grant", "apply for access")
        if method == "describe" and params.get("dataset") == "boom":
            raise RuntimeError("row 17 has income 12345.67")  # must never reach the client
        if method == "describe" and params.get("dataset") == "nan":
            return {"value": float("nan")}
        if method == "describe" and params.get("dataset") == "object":
            return {"value": object()}
        if method == "describe" and params.get("dataset") == "huge":
            return {"blob": "x" * (wire.MAX_MESSAGE + 10)}
        if "pad" in params:
            return "ok"
        if method == "query":
            return {"columns": ["n"], "rows": [[1.5]], "echo": params}
        return {"method": method, "params": params}

    path = short_tmp / "b.sock"
    server = broker_socket.serve(path, handler, max_connections=2, idle_timeout=5)
    server.calls = calls
    yield server
    server.close()


def test_round_trip_with_the_sdk_client(served):
    client = BrokerClient(str(served.path))
    query = {"kind": "aggregate", "dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}],
             "epsilon": 0.5, "filter": [{"column": "name", "op": "==", "value": "张三"}]}
    result = client.call("query", query)
    assert result == {"columns": ["n"], "rows": [[1.5]], "echo": query}
    assert served.calls == [("query", query)]
    # the same connection serves the next request
    assert client.call("budget", {}) == {"method": "budget", "params": {}}
    client.close()


def test_socket_mode_and_close_removes_it(short_tmp):
    path = short_tmp / "x.sock"
    server = broker_socket.serve(path, lambda m, p: None, max_connections=1, idle_timeout=5)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666
    server.close()
    assert not path.exists()
    server.close()  # idempotent


def test_stale_socket_is_replaced_but_a_file_is_not(short_tmp):
    path = short_tmp / "s.sock"
    first = broker_socket.serve(path, lambda m, p: 1, max_connections=1, idle_timeout=5)
    first._closed.set()  # simulate a crashed server leaving its socket behind
    first._acceptor.join()
    first._listener.close()
    second = broker_socket.serve(path, lambda m, p: 2, max_connections=1, idle_timeout=5)
    assert BrokerClient(str(path)).call("budget") == 2
    second.close()
    plain = short_tmp / "plain"
    plain.write_text("x")
    with pytest.raises(FileExistsError):
        broker_socket.serve(plain, lambda m, p: 1)


@pytest.mark.parametrize("raw, code", [
    (b"not json\n", "bad_request"),
    (b"[1, 2]\n", "bad_request"),
    (b'{"id": 1, "method": "budget", "params": {"x": NaN}}\n', "bad_request"),
    (b'{"id": 1, "method": "budget", "params": {"x": Infinity}}\n', "bad_request"),
    (b'{"id": "1", "method": "budget"}\n', "bad_request"),
    (b'{"id": true, "method": "budget"}\n', "bad_request"),
    (b'{"id": -1, "method": "budget"}\n', "bad_request"),
    (b'{"id": 1}\n', "bad_request"),
    (b'{"id": 1, "method": "drop_tables"}\n', "unknown_method"),
    (b'{"id": 1, "method": "budget", "params": [1]}\n', "bad_request"),
    (b'\xff\xfe\n', "bad_request"),
])
def test_malformed_lines_get_clear_errors_and_the_connection_stays_usable(served, raw, code):
    s, reader = connect(served.path)
    answer = exchange(s, reader, raw)
    assert answer["ok"] is False
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    # still usable
    answer = exchange(s, reader, b'{"id": 7, "method": "budget", "params": {}}\n')
    assert answer == {"id": 7, "ok": True, "result": {"method": "budget", "params": {}}}
    s.close()


def test_bad_request_keeps_a_valid_id(served):
    s, reader = connect(served.path)
    answer = exchange(s, reader, b'{"id": 5, "method": "nope"}\n')
    assert answer["id"] == 5 and answer["error"]["code"] == "unknown_method"
    s.close()


def test_blank_lines_are_ignored(served):
    s, reader = connect(served.path)
    answer = exchange(s, reader, b'\n\n{"id": 2, "method": "datasets"}\n')
    assert answer["id"] == 2 and answer["ok"] is True
    s.close()


def test_oversized_request_is_refused_and_the_connection_closed(served):
    s, reader = connect(served.path)
    big = b'{"id": 1, "method": "query", "params": {"x": "' + b"a" * (wire.MAX_MESSAGE + 100) + b'"}}\n'
    try:
        s.sendall(big)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before reading it all
    line = reader.read_line()
    answer = json.loads(line)
    assert answer["ok"] is False and answer["error"]["code"] == "too_large"
    assert reader.read_line() is None  # closed
    assert served.calls == []


def test_message_exactly_at_the_cap_is_accepted(served):
    s, reader = connect(served.path)
    head = b'{"id": 1, "method": "datasets", "params": {"pad": "'
    tail = b'"}}\n'
    raw = head + b"a" * (wire.MAX_MESSAGE - len(head) - len(tail)) + tail
    assert len(raw) == wire.MAX_MESSAGE
    assert exchange(s, reader, raw)["ok"] is True
    s.close()


def test_client_refuses_to_send_an_oversized_request(served):
    from sandbox.sdk.errors import QueryInvalid

    client = BrokerClient(str(served.path))
    with pytest.raises(QueryInvalid, match="limit"):
        client.call("query", {"x": "a" * wire.MAX_MESSAGE})
    assert served.calls == []


def test_oversized_answer_becomes_a_clean_error(served):
    client = BrokerClient(str(served.path))
    with pytest.raises(Exception) as info:
        client.call("describe", {"dataset": "huge"})
    assert "1 MiB" in str(info.value)
    assert client.call("budget") == {"method": "budget", "params": {}}


def test_refusal_is_sent_as_the_errors_to_dict(served):
    s, reader = connect(served.path)
    answer = exchange(s, reader, b'{"id": 3, "method": "describe", "params": {"dataset": "secret"}}\n')
    assert answer == {"id": 3, "ok": False, "error": {
        "code": "policy_refused", "message": "dataset secret is not covered by this grant",
        "hint": "apply for access"}}
    client = BrokerClient(str(served.path))
    with pytest.raises(SdkPolicyRefused) as info:
        client.call("describe", {"dataset": "secret"})
    assert info.value.code == "policy_refused" and info.value.hint == "apply for access"


def test_handler_crash_becomes_generic_internal_error_logged_on_host(served, caplog):
    caplog.set_level(logging.ERROR, logger="sandbox.broker_socket")
    s, reader = connect(served.path)
    raw = exchange(s, reader, b'{"id": 4, "method": "describe", "params": {"dataset": "boom"}}\n')
    assert raw["ok"] is False
    assert raw["error"]["code"] == "internal"
    assert raw["error"]["message"] == broker_socket.INTERNAL_MESSAGE
    text = json.dumps(raw)
    assert "12345" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert any("12345" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    # the connection is still usable
    assert exchange(s, reader, b'{"id": 5, "method": "budget"}\n')["ok"] is True
    with pytest.raises(BrokerUnavailable):
        BrokerClient(str(served.path)).call("describe", {"dataset": "boom"})


def test_non_json_results_become_internal_errors_and_nan_becomes_null(served):
    client = BrokerClient(str(served.path))
    assert client.call("describe", {"dataset": "nan"}) == {"value": None}
    with pytest.raises(BrokerUnavailable):
        client.call("describe", {"dataset": "object"})


def test_max_connections_refuses_extra_clients_with_busy(short_tmp):
    server = broker_socket.serve(short_tmp / "c.sock", lambda m, p: "ok", max_connections=1, idle_timeout=5)
    try:
        a, ra = connect(server.path)
        assert exchange(a, ra, b'{"id": 1, "method": "budget"}\n')["result"] == "ok"
        b, rb = connect(server.path)
        answer = json.loads(rb.read_line())
        assert answer["error"]["code"] == "busy"
        assert rb.read_line() is None
        a.close()
        deadline = time.monotonic() + 5
        while server.active_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        c, rc = connect(server.path)
        assert exchange(c, rc, b'{"id": 1, "method": "budget"}\n')["result"] == "ok"
        c.close()
    finally:
        server.close()


def test_idle_connections_are_closed(short_tmp):
    server = broker_socket.serve(short_tmp / "i.sock", lambda m, p: "ok", max_connections=2, idle_timeout=0.3)
    try:
        s, reader = connect(server.path)
        assert reader.read_line() is None  # closed after 0.3 s of silence
    finally:
        server.close()


def test_close_drops_live_connections(short_tmp):
    server = broker_socket.serve(short_tmp / "d.sock", lambda m, p: "ok", max_connections=2, idle_timeout=60)
    s, reader = connect(server.path)
    assert exchange(s, reader, b'{"id": 1, "method": "budget"}\n')["ok"]
    server.close()
    assert reader.read_line() is None
    with pytest.raises(BrokerUnavailable):
        BrokerClient(str(server.path)).call("budget")


def test_client_reconnects_after_the_server_restarts(short_tmp):
    path = short_tmp / "r.sock"
    server = broker_socket.serve(path, lambda m, p: 1, max_connections=2, idle_timeout=60)
    client = BrokerClient(str(path), timeout=5)
    assert client.call("budget") == 1
    server.close()
    with pytest.raises(BrokerUnavailable):
        client.call("budget")
    server = broker_socket.serve(path, lambda m, p: 2, max_connections=2, idle_timeout=60)
    try:
        assert client.call("budget") == 2
    finally:
        server.close()


def test_client_times_out(short_tmp):
    def slow(method, params):
        time.sleep(1.0)
        return 1

    server = broker_socket.serve(short_tmp / "t.sock", slow, max_connections=2, idle_timeout=60)
    try:
        with pytest.raises(BrokerUnavailable, match="did not answer"):
            BrokerClient(str(server.path), timeout=0.2).call("budget")
    finally:
        server.close()


def test_encode_decode_are_strict():
    assert wire.decode(wire.encode({"a": [1, "二", None]})) == {"a": [1, "二", None]}
    assert wire.encode({"x": float("inf")}) == b'{"x":null}\n'
    with pytest.raises(wire.WireError):
        wire.decode(b'{"x": NaN}')
    with pytest.raises(wire.WireError):
        wire.encode({"x": b"bytes"})
    with pytest.raises(wire.WireError) as info:
        wire.encode({"x": "a" * wire.MAX_MESSAGE})
    assert info.value.code == "too_large"
    with pytest.raises(wire.WireError):
        wire.decode(b"[" * 100000 + b"]" * 100000)
