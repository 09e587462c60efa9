"""The authorization matrix of issue 4: every role × every route, allowed and refused.

Each row names a route, a request that succeeds for a role that may make it, and the roles
that may. Every other role is refused: the public with 401, a known user with 403. On top,
an analyst asking for another analyst's grant or job gets 404 (existence never leaks), and a
provider asking for another provider's dataset usage gets 404 too.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from tests.api.conftest import POLICY, World

ALL = ("operator", "provider", "analyst", "reviewer", "public")
USERS = ("operator", "provider", "analyst", "reviewer")
ROLES = ("operator", "provider", "analyst", "reviewer", "public")
QUERY = {"dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}], "epsilon": 0.1}


def _upload(w: World) -> dict[str, Any]:
    return {"data": (io.BytesIO(w.files["loan_defaults"].read_bytes()), "loans.csv"),
            "policy": (io.BytesIO(POLICY.read_bytes()), "farm-credit.yaml"), "name": "loan_defaults"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {grant}, {job}, {queued_job}, {seq}
    allowed: tuple[str, ...]
    json: Callable[[World], Any] | None = None
    form: Callable[[World], Any] | None = None
    ok: int = 200


ROUTES = [
    Route("GET", "/api/v1/datasets", ALL),
    Route("GET", "/api/v1/datasets/farmers", ALL),
    Route("GET", "/api/v1/datasets/farmers/mock?rows=5", USERS),
    Route("POST", "/api/v1/datasets", ("provider", "operator"), form=_upload, ok=201),
    Route("GET", "/api/v1/datasets/farmers/usage", ("provider", "operator")),
    Route("GET", "/api/v1/grants", ("operator", "reviewer", "analyst")),
    Route("GET", "/api/v1/grants/{grant}", ("operator", "reviewer", "analyst")),
    Route("POST", "/api/v1/grants", ("operator",), ok=201,
          json=lambda w: {"analyst": "ana", "datasets": ["farmers"], "purpose": "more", "days": 10}),
    Route("POST", "/api/v1/grants/{grant}/revoke", ("operator",), json=lambda w: {"reason": "done"}),
    Route("POST", "/api/v1/grants/{grant}/extend", ("operator",), json=lambda w: {"days": 5}),
    Route("GET", "/api/v1/grants/{grant}/budget", ("operator", "reviewer", "analyst")),
    Route("GET", "/api/v1/grants/{grant}/history", ("operator", "reviewer", "analyst")),
    Route("POST", "/api/v1/grants/{grant}/preview", ("analyst",), json=lambda w: {"query": QUERY}),
    Route("POST", "/api/v1/grants/{grant}/query", ("analyst",), json=lambda w: {"query": QUERY}),
    Route("POST", "/api/v1/jobs", ("analyst",), ok=202,
          json=lambda w: {"script": "print(1)\n", "name": "x.py", "mock": True, "datasets": ["farmers"]}),
    Route("GET", "/api/v1/jobs", ("analyst", "reviewer", "operator")),
    Route("GET", "/api/v1/jobs/{job}", ("analyst", "reviewer", "operator")),
    Route("GET", "/api/v1/jobs/{job}/logs", ("analyst", "reviewer", "operator")),
    Route("GET", "/api/v1/jobs/{job}/script", ("analyst", "reviewer", "operator")),
    Route("GET", "/api/v1/jobs/{job}/results", ("analyst", "reviewer", "operator")),
    Route("GET", "/api/v1/jobs/{job}/outputs/result.csv", ("analyst", "reviewer", "operator")),
    Route("POST", "/api/v1/jobs/{queued_job}/cancel", ("analyst",)),
    Route("GET", "/api/v1/audit/entries?last=5", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/entries/0", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/checkpoint", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/checkpoints", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/consistency?old=1&new=2", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/verify", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/key", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/export", ("reviewer", "operator")),
    Route("GET", "/api/v1/audit/export/checkpoints", ("reviewer", "operator")),
    Route("POST", "/api/v1/applications", ("analyst",), ok=201,
          json=lambda w: {"datasets": ["farmers"], "purpose": "p", "scenario": "s", "epsilon": 1.0, "days": 9}),
    Route("GET", "/api/v1/applications", ("analyst", "operator", "reviewer")),
    Route("GET", "/api/v1/applications/{app}", ("analyst", "operator", "reviewer")),
    Route("POST", "/api/v1/applications/{app}/approve", ("operator",), json=lambda w: {"note": "ok"}),
    Route("POST", "/api/v1/applications/{app}/refuse", ("operator",), json=lambda w: {"reason": "no"}),
    Route("POST", "/api/v1/applications/{app}/ask", ("operator",), json=lambda w: {"question": "why?"}),
    Route("POST", "/api/v1/applications/{info_app}/reply", ("analyst",), json=lambda w: {"text": "because"}),
    Route("POST", "/api/v1/applications/{app}/withdraw", ("analyst",)),
    Route("GET", "/api/v1/disclosure", ALL),
    Route("GET", "/api/v1/me", USERS),
    Route("GET", "/api/v1/users", ("operator",)),
    Route("POST", "/api/v1/users", ("operator",), ok=201,
          json=lambda w: {"name": "newbie", "role": "analyst", "organisation": "x"}),
    Route("GET", "/api/v1/users/ana", ("operator",)),
    Route("GET", "/api/v1/tokens", ("operator",)),
    Route("POST", "/api/v1/tokens", ("operator",), ok=201, json=lambda w: {"user": "ana", "days": 3}),
    Route("POST", "/api/v1/tokens/{token_id}/revoke", ("operator",)),
]


def _path(route: Route, w: World) -> str:
    token_id = w.tokens["analyst2"].split("_")[1]
    return route.path.format(grant=w.grant, job=w.job, queued_job=w.queued_job, token_id=token_id,
                             app=w.application, info_app=w.info_application)


def _call(client, route: Route, w: World, role: str):  # type: ignore[no-untyped-def]
    kwargs: dict[str, Any] = {"headers": w.headers(role)}
    if route.json:
        kwargs["json"] = route.json(w)
    if route.form:
        kwargs["data"] = route.form(w)
        kwargs["content_type"] = "multipart/form-data"
    return client.open(_path(route, w), method=route.method, **kwargs)


CASES = [pytest.param(r, role, id=f"{r.method} {r.path} as {role}") for r in ROUTES for role in ROLES]


@pytest.mark.parametrize("route,role", CASES)
def test_matrix(client, world: World, route: Route, role: str) -> None:
    resp = _call(client, route, world, role)
    if role in route.allowed:
        assert resp.status_code == route.ok, resp.get_data(as_text=True)[:500]
    else:
        expected = 401 if role == "public" else 403
        assert resp.status_code == expected, resp.get_data(as_text=True)[:500]
        error = resp.get_json()["error"]
        assert error["code"] == ("unauthorized" if role == "public" else "forbidden")
        assert error["message"] and error["hint"]


def test_matrix_covers_every_route(app) -> None:
    """Every API route of the app is a row of the matrix (so none escapes the role checks)."""
    import re

    described = {(r.method, re.sub(r"\?.*$", "", r.path)) for r in ROUTES}
    templates = {(m, re.sub(r"/(farmers|ana|0|result\.csv)(?=/|$)", "/<x>", re.sub(r"\{\w+\}", "<x>", p)))
                 for m, p in described}
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<[^>]+>", "<x>", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (method, path) not in templates:
                missing.append(f"{method} {rule.rule}")
    assert not missing, missing


def test_every_api_route_checks_roles(app) -> None:
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            view = app.view_functions[rule.endpoint]
            assert getattr(view, "_sandbox_roles", None), rule.rule


# -- others' objects: 404, not 403 ------------------------------------------------------------

OTHERS_PATHS = [
    ("GET", "/api/v1/grants/{other_grant}"),
    ("GET", "/api/v1/grants/{other_grant}/budget"),
    ("GET", "/api/v1/grants/{other_grant}/history"),
    ("POST", "/api/v1/grants/{other_grant}/preview"),
    ("POST", "/api/v1/grants/{other_grant}/query"),
    ("GET", "/api/v1/jobs/{other_job}"),
    ("GET", "/api/v1/jobs/{other_job}/logs"),
    ("GET", "/api/v1/jobs/{other_job}/script"),
    ("GET", "/api/v1/jobs/{other_job}/results"),
    ("POST", "/api/v1/jobs/{other_job}/cancel"),
    ("GET", "/api/v1/applications/{other_app}"),
    ("POST", "/api/v1/applications/{other_app}/withdraw"),
]


@pytest.mark.parametrize("method,path", OTHERS_PATHS)
def test_analyst_cannot_see_other_analysts_objects(client, world: World, method: str, path: str) -> None:
    url = path.format(other_grant=world.other_grant, other_job=world.other_job, other_app=world.other_application)
    kwargs = {"json": {"query": QUERY}} if method == "POST" and "grants" in path else {}
    resp = client.open(url, method=method, headers=world.headers("analyst"), **kwargs)
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"
    # the same words as for an object that does not exist
    missing = client.open(url.replace(world.other_grant, "g-00000000").replace(world.other_job, "j-0000000000")
                          .replace(world.other_application, "a-00000000"),
                          method=method, headers=world.headers("analyst"), **kwargs)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["message"].split()[:2] == resp.get_json()["error"]["message"].split()[:2]


def test_analyst_lists_only_own(client, world: World) -> None:
    grants = client.get("/api/v1/grants", headers=world.headers("analyst")).get_json()
    assert {g["analyst"] for g in grants} == {"ana"}
    assert client.get("/api/v1/grants?analyst=bob", headers=world.headers("analyst")).get_json() == []
    jobs = client.get("/api/v1/jobs", headers=world.headers("analyst")).get_json()
    assert jobs and {j["owner"] for j in jobs} == {"ana"}
    assert client.get("/api/v1/jobs?owner=bob", headers=world.headers("analyst")).get_json() == []


def test_analyst_cannot_submit_under_another_grant(client, world: World) -> None:
    resp = client.post("/api/v1/jobs", headers=world.headers("analyst"),
                       json={"script": "print(1)\n", "name": "x.py", "grant_id": world.other_grant})
    assert resp.status_code == 404
    jobs = client.get("/api/v1/jobs?owner=bob", headers=world.headers("operator")).get_json()
    assert len(jobs) == 1  # nothing queued under bob's grant


def test_provider_sees_usage_of_own_datasets_only(client, world: World) -> None:
    own = client.get("/api/v1/datasets/farmers/usage", headers=world.headers("provider"))
    assert own.status_code == 200
    assert {g["analyst"] for g in own.get_json()["grants"]} == {"ana", "bob"}
    other = client.get("/api/v1/datasets/utility_payments/usage", headers=world.headers("provider"))
    assert other.status_code == 404


def test_provider_cannot_replace_another_providers_dataset(client, world: World) -> None:
    form = {"data": (io.BytesIO(world.files["utility_payments"].read_bytes()), "u.csv"),
            "policy": (io.BytesIO(POLICY.read_bytes()), "p.yaml"), "name": "utility_payments", "replace": "true"}
    resp = client.post("/api/v1/datasets", headers=world.headers("provider"), data=form,
                       content_type="multipart/form-data")
    assert resp.status_code in (403, 404)
    before = client.get("/api/v1/datasets/utility_payments").get_json()["version"]
    assert before  # unchanged and still there


def test_refusals_are_audited(client, world: World) -> None:
    assert client.get("/api/v1/audit/verify", headers=world.headers("analyst")).status_code == 403
    assert client.get(f"/api/v1/jobs/{world.other_job}", headers=world.headers("analyst")).status_code == 404
    assert client.get("/api/v1/users").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer sbx_nonsense"}).status_code == 401
    entries = client.get("/api/v1/audit/entries?action=request.refused",
                         headers=world.headers("reviewer")).get_json()
    outcomes = [(e["actor"], e["outcome"]) for e in entries]
    assert ("ana", "forbidden") in outcomes
    assert ("ana", "not_owner") in outcomes
    assert ("anonymous", "unauthorized") in outcomes
    failed = client.get("/api/v1/audit/entries?action=auth.failed", headers=world.headers("reviewer")).get_json()
    assert failed and failed[-1]["details"]["reason"] == "malformed"
    assert client.get("/api/v1/audit/verify", headers=world.headers("reviewer")).get_json()["ok"]
