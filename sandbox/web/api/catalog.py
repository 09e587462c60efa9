"""Catalog: public metadata for anyone, mock data for users, registration for providers/operators."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from apiflask import APIBlueprint
from apiflask.schemas import FileSchema
from flask import Response

from sandbox.web.auth import ANY_USER, actor, require_own, requires, services
from sandbox.web.errors import ApiError
from sandbox.web.schemas import MockArgs, RegisterDataset, query

bp = APIBlueprint("catalog", __name__, tag="catalog")

DATA_SUFFIXES = (".csv", ".parquet", ".pq")


@bp.get("/datasets")
@requires("public")
def list_datasets():  # type: ignore[no-untyped-def]
    """Every dataset's public metadata."""
    catalog = services().catalog
    return [catalog.describe(name) for name in catalog.names()]


@bp.get("/datasets/<name>")
@requires("public")
def show_dataset(name: str):  # type: ignore[no-untyped-def]
    """One dataset's public metadata: schema, tags, bounds, openness, grade, prices."""
    return services().catalog.describe(name)


@bp.get("/datasets/<name>/mock")
@requires(*ANY_USER)
@query(bp, MockArgs)
@bp.output(FileSchema, content_type="text/csv", description="mock rows as CSV")
def mock_dataset(name: str, args: dict):  # type: ignore[no-untyped-def]
    """Mock rows made from the public schema only (never from the data), as CSV."""
    frame = services().catalog.mock(name, rows=args["rows"], seed=args["seed"])
    return Response(frame.write_csv(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}-mock.csv"',
                             "X-Sandbox-Mock": "true"})


def _safe_upload_name(filename: str | None, allowed: tuple[str, ...], what: str) -> str:
    raw = (filename or "").replace("\\", "/")
    base = raw.rsplit("/", 1)[-1]
    if not base or base in (".", "..") or base != raw or "\x00" in base or len(base) > 200:
        raise ApiError(422, "invalid_input", f"the {what} file name must be a plain file name, not a path",
                       f"name it like data{allowed[0]}")
    if not base.lower().endswith(allowed):
        raise ApiError(422, "invalid_input", f"the {what} file must end in {' or '.join(allowed)}",
                       "rename the file")
    return "upload" + base[base.rfind("."):].lower()


@bp.post("/datasets")
@requires("provider", "operator", status=201)
@bp.input(RegisterDataset, location="form_and_files", arg_name="form")
def register_dataset(form: dict):  # type: ignore[no-untyped-def]
    """Register (or, with replace, update) a dataset: multipart with the data file and its policy YAML.

    A provider registers datasets as their owner and may replace only its own.
    """
    who = actor()
    data_name = _safe_upload_name(form["data"].filename, DATA_SUFFIXES, "data")
    policy_name = _safe_upload_name(form["policy"].filename, (".yaml", ".yml"), "policy")
    folder = Path(tempfile.mkdtemp(prefix="sandbox-upload-"))
    try:
        data_path, policy_path = folder / data_name, folder / policy_name
        form["data"].save(data_path)
        form["policy"].save(policy_path)
        catalog = services().catalog
        added = catalog.add(data_path, form["name"], policy_path, who, replace=form["replace"],
                            drop_undeclared=form["drop_undeclared"],
                            owner=who.name if who.role == "provider" else None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**catalog.describe(added.name), "warnings": list(added.warnings),
            "replaced": added.replaced}, 201


@bp.get("/datasets/<name>/usage")
@requires("provider", "operator")
def dataset_usage(name: str):  # type: ignore[no-untyped-def]
    """Who may use a dataset and how much they spent: for its provider and operators."""
    svc = services()
    row = svc.catalog.get(name)
    require_own("dataset", name, row.owner, "see `sandbox dataset list` for the datasets there are", role="provider")
    grants = [g for g in svc.grants.list() if name in g["datasets"]]
    usage = []
    for g in grants:
        budget = next((b for b in svc.grants.get(g["id"])["budgets"] if b["dataset"] == name), None)
        usage.append({"grant": g["id"], "analyst": g["analyst"], "purpose": g["purpose"],
                      "user_type": g["user_type"], "status": g["status"], "expires_at": g["expires_at"],
                      "epsilon_total": budget and budget["epsilon_total"],
                      "epsilon_spent": budget and budget["epsilon_spent"]})
    entries = svc.audit.entries(dataset=name)
    released = sum(1 for e in entries if e["action"] == "query.released")
    refused = sum(1 for e in entries if e["action"] == "query.refused")
    return {"dataset": name, "owner": row.owner, "grants": usage,
            "queries_released": released, "queries_refused": refused}
