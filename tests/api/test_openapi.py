"""The spec at /openapi.json describes exactly the API's routes, with their methods."""
from __future__ import annotations

import re


def _flask_paths(app) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        if rule.endpoint.startswith("openapi."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        found.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return found


def test_every_route_is_described_and_every_described_path_exists(app, client) -> None:
    spec = client.get("/openapi.json").get_json()
    described = {p: {m for m in ops if m in ("get", "post", "put", "patch", "delete")}
                 for p, ops in spec["paths"].items()}
    routes = _flask_paths(app)
    assert routes == described


def test_every_operation_documents_its_errors_and_security(client) -> None:
    spec = client.get("/openapi.json").get_json()
    error_schema = spec["components"]["schemas"]["HTTPError"]
    assert error_schema["required"] == ["error"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status in ("400", "404", "422", "429", "500"):
                assert status in op["responses"], (method, path, status)
            public = op.get("x-roles") == ["public"]
            assert ("security" in op) != public, (method, path)


def test_request_schemas_refuse_unknown_fields(client) -> None:
    spec = client.get("/openapi.json").get_json()
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert schema["additionalProperties"] is False
    assert {"script", "name", "grant_id", "mock", "datasets"} <= set(schema["properties"])
