"""Bad input: a 4xx with a stable code and a clear message, never a traceback or a data value,
and nothing stored half-way."""
from __future__ import annotations

import io

import pytest

from tests.api.conftest import POLICY, World

FIELDS = ("code", "message", "hint")


def _error(resp, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "application/json"
    error = resp.get_json()["error"]
    assert all(isinstance(error[k], str) for k in FIELDS)
    assert error["message"] and error["hint"]
    assert "Traceback" not in resp.get_data(as_text=True)
    if code:
        assert error["code"] == code, error
    return error


def _jobs(client, world: World) -> int:  # type: ignore[no-untyped-def]
    return len(client.get("/api/v1/jobs?limit=500", headers=world.headers("operator")).get_json())


def _audit_size(client, world: World) -> int:  # type: ignore[no-untyped-def]
    return client.get("/api/v1/audit/verify", headers=world.headers("reviewer")).get_json()["entries"]


def test_flask_errors_are_json(client, world: World) -> None:
    _error(client.get("/api/v1/no-such-thing"), 404, "not_found")
    _error(client.delete("/api/v1/datasets"), 405, "method_not_allowed")
    _error(client.put("/api/v1/jobs", headers=world.headers("analyst"), json={}), 405, "method_not_allowed")


def test_bad_tokens(client) -> None:
    for header in ("Bearer", "Bearer sbx_x", "Basic dXNlcjpwYXNz", "Bearer sbx_000000000000_" + "a" * 43):
        _error(client.get("/api/v1/me", headers={"Authorization": header}), 401, "unauthorized")
    resp = client.get("/api/v1/me")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("raw,content_type,status,code", [
    (b"{not json", "application/json", 400, "malformed_json"),
    (b"\xff\xfe\x00", "application/json", 400, "malformed_json"),
    (b'{"script": "print(1)"', "application/json", 400, "malformed_json"),
    (b"script=print(1)", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"print(1)", "text/plain", 415, "unsupported_media_type"),
    (b'{"script": "print(\\ud800)", "mock": true}', "application/json", 400, "invalid_unicode"),
    (b'{"script": "print(1)\\u0000", "mock": true}', "application/json", 400, "invalid_unicode"),
    (b'[1, 2, 3]', "application/json", 422, "invalid_input"),
    (b'"a string"', "application/json", 422, "invalid_input"),
])
def test_malformed_bodies(client, world: World, raw: bytes, content_type: str, status: int, code: str) -> None:
    before, entries = _jobs(client, world), _audit_size(client, world)
    resp = client.post("/api/v1/jobs", headers={**world.headers("analyst"), "Content-Type": content_type}, data=raw)
    _error(resp, status, code)
    assert _jobs(client, world) == before
    assert _audit_size(client, world) == entries


@pytest.mark.parametrize("body,field", [
    ({"script": 5, "mock": True}, "script"),
    ({"script": "print(1)", "mock": "yes please"}, "mock"),
    ({"script": "print(1)", "mock": True, "datasets": "farmers"}, "datasets"),
    ({"script": "print(1)", "mock": True, "extra": 1}, "extra"),
    ({"script": "print(1)", "mock": True, "name": "../../etc/passwd.py"}, "name"),
    ({"script": "print(1)", "mock": True, "name": "/abs/x.py"}, "name"),
    ({"script": "print(1)", "mock": True, "name": "x.sh"}, "name"),
    ({"script": "print(1)", "mock": True, "name": "..py"}, None),
    ({"mock": True}, "script"),
    ({"script": "", "mock": True}, "script"),
])
def test_wrong_fields_are_refused(client, world: World, body: dict, field: str | None) -> None:
    before = _jobs(client, world)
    error = _error(client.post("/api/v1/jobs", headers=world.headers("analyst"), json=body), 422, "invalid_input")
    if field:
        assert field in error["message"]
    assert _jobs(client, world) == before


def test_unknown_query_parameters_are_refused(client, world: World) -> None:
    error = _error(client.get("/api/v1/jobs?ownr=ana", headers=world.headers("analyst")), 422, "invalid_input")
    assert "ownr" in error["message"]
    _error(client.get("/api/v1/audit/entries?last=abc", headers=world.headers("reviewer")), 422, "invalid_input")
    _error(client.get("/api/v1/audit/entries?since=yesterday", headers=world.headers("reviewer")), 422)


def test_script_over_the_size_limit(client, world: World) -> None:
    before = _jobs(client, world)
    big = "x = 1\n" * (300 * 1024 // 6)
    error = _error(client.post("/api/v1/jobs", headers=world.headers("analyst"),
                               json={"script": big, "mock": True}), 422, "invalid_input")
    assert "256 KiB" in error["message"]
    assert _jobs(client, world) == before


def test_huge_bodies(client, world: World) -> None:
    before = _jobs(client, world)
    huge = b'{"script": "' + b"#" * (2 * 1024 * 1024) + b'", "mock": true}'
    _error(client.post("/api/v1/jobs", headers={**world.headers("analyst"), "Content-Type": "application/json"},
                       data=huge), 413, "too_large")
    assert _jobs(client, world) == before


def test_huge_upload_is_refused(world: World) -> None:
    from sandbox.web import create_app

    app = create_app({"home": str(world.root), "rate_limit": "", "max_body_bytes": 10_000})
    client = app.test_client()
    form = {"data": (io.BytesIO(b"a,b\n" + b"1,2\n" * 10_000), "d.csv"),
            "policy": (io.BytesIO(POLICY.read_bytes()), "p.yaml"), "name": "loan_defaults"}
    _error(client.post("/api/v1/datasets", headers=world.headers("operator"), data=form,
                       content_type="multipart/form-data"), 413, "too_large")
    app.extensions["sandbox.services"].db.engine.dispose()


def test_script_refused_by_the_check(client, world: World) -> None:
    error = _error(client.post("/api/v1/jobs", headers=world.headers("analyst"),
                               json={"script": "import os\nos.system('id')\n", "mock": True}), 422, "script_refused")
    assert error["violations"][0]["line"] == 1
    assert error["job"]["state"] == "refused"


def test_mock_and_grant_combinations(client, world: World) -> None:
    h = world.headers("analyst")
    _error(client.post("/api/v1/jobs", headers=h, json={"script": "print(1)", "mock": True, "grant_id": world.grant}),
           422, "invalid_input")
    _error(client.post("/api/v1/jobs", headers=h, json={"script": "print(1)"}), 422, "invalid_input")
    _error(client.post("/api/v1/jobs", headers=h, json={"script": "print(1)", "mock": True,
                                                        "datasets": ["nope"]}), 404, "not_found")


@pytest.mark.parametrize("filename", ["../../evil.csv", "/etc/passwd.csv", "a/b.csv", "..", "data.exe", "",
                                      "C:\\\\x\\\\data.csv"])
def test_path_tricks_in_upload_names(client, world: World, filename: str) -> None:
    form = {"data": (io.BytesIO(world.files["loan_defaults"].read_bytes()), filename),
            "policy": (io.BytesIO(POLICY.read_bytes()), "p.yaml"), "name": "loan_defaults"}
    resp = client.post("/api/v1/datasets", headers=world.headers("operator"), data=form,
                       content_type="multipart/form-data")
    assert resp.status_code in (400, 422), resp.get_data(as_text=True)
    assert client.get("/api/v1/datasets/loan_defaults").status_code == 404


def test_failed_registration_stores_nothing(client, world: World) -> None:
    vault = sorted(p for p in (world.root / "vault").rglob("*") if p.is_file())
    entries = _audit_size(client, world)
    form = {"data": (io.BytesIO(b"loan_id,foo\n1,2\n"), "loans.csv"),
            "policy": (io.BytesIO(POLICY.read_bytes()), "p.yaml"), "name": "loan_defaults"}
    error = _error(client.post("/api/v1/datasets", headers=world.headers("operator"), data=form,
                               content_type="multipart/form-data"), 422, "invalid_input")
    assert "columns" in error["message"] or "columns" in error["hint"]
    assert sorted(p for p in (world.root / "vault").rglob("*") if p.is_file()) == vault
    assert client.get("/api/v1/datasets/loan_defaults").status_code == 404
    assert _audit_size(client, world) == entries


def test_output_names_cannot_escape(client, world: World) -> None:
    h = world.headers("analyst")
    for name in ("..%2F..%2Fsandbox.db", "..", "%2e%2e", "result.csv%00", "..%2Fout%2Fresult.csv"):
        resp = client.get(f"/api/v1/jobs/{world.job}/outputs/{name}", headers=h)
        assert resp.status_code == 404, name
    ok = client.get(f"/api/v1/jobs/{world.job}/outputs/result.csv", headers=h)
    assert ok.status_code == 200 and ok.data == b"group,count\na,120\n"


def test_unicode_oddities_round_trip_or_refuse(client, world: World) -> None:
    h = world.headers("operator")
    for name in ("名字", "a\u202eb", "e\u0301", "x" * 101):
        resp = client.post("/api/v1/users", headers=h, json={"name": name, "role": "analyst"})
        _error(resp, 422, "invalid_input")
    resp = client.post("/api/v1/users", headers=h, json={"name": "wei", "role": "analyst", "organisation": "农业银行 🌾"})
    assert resp.status_code == 201 and resp.get_json()["organisation"] == "农业银行 🌾"


def test_domain_errors_map_to_statuses(client, world: World) -> None:
    h = world.headers("operator")
    _error(client.post("/api/v1/users", headers=h, json={"name": "ana", "role": "analyst"}), 409, "already_exists")
    _error(client.post(f"/api/v1/grants/{world.grant}/extend", headers=h, json={"days": 0}), 422, "invalid_input")
    _error(client.get("/api/v1/grants/g-nope", headers=h), 404, "not_found")
    client.post(f"/api/v1/grants/{world.grant}/revoke", headers=h, json={"reason": "over"})
    q = {"query": {"dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}], "epsilon": 0.1}}
    _error(client.post(f"/api/v1/grants/{world.grant}/query", headers=world.headers("analyst"), json=q),
           403, "grant_inactive")
    # the budget spent: 409
    big = {"query": {**q["query"], "epsilon": 1.0}}
    hb = world.headers("analyst2")
    for _ in range(2):
        assert client.post(f"/api/v1/grants/{world.other_grant}/query", headers=hb,
                           json={"query": {**big["query"], "aggregates": [{"name": f"n{_}", "op": "count"}]}}
                           ).status_code == 200
    _error(client.post(f"/api/v1/grants/{world.other_grant}/query", headers=hb, json=big), 409, "budget_exceeded")
    # approving twice: a conflict
    assert client.post(f"/api/v1/applications/{world.application}/approve", headers=h, json={}).status_code == 200
    _error(client.post(f"/api/v1/applications/{world.application}/approve", headers=h, json={}), 409, "conflict")


def test_rate_limit_per_token(world: World) -> None:
    from sandbox.web import create_app

    app = create_app({"home": str(world.root), "rate_limit": "3 per minute"})
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/me", headers=world.headers("analyst")).status_code == 200
    error = _error(client.get("/api/v1/me", headers=world.headers("analyst")), 429, "rate_limited")
    assert "3 per 1 minute" in error["message"]
    assert client.get("/api/v1/me", headers=world.headers("reviewer")).status_code == 200  # another token
    app.extensions["sandbox.services"].db.engine.dispose()


def test_internal_errors_never_leak(world: World, monkeypatch) -> None:
    from sandbox.web import create_app

    app = create_app({"home": str(world.root), "rate_limit": ""})
    services = app.extensions["sandbox.services"]

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret row value 12345")

    monkeypatch.setattr(services.catalog, "names", boom)
    resp = app.test_client().get("/api/v1/datasets")
    _error(resp, 500, "internal")
    assert "12345" not in resp.get_data(as_text=True)
    services.db.engine.dispose()
