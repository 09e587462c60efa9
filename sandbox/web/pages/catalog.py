"""The catalog: search and filter, one dataset's page, its mock data."""
from __future__ import annotations

from flask import Response, abort, render_template, request

from sandbox.errors import PolicyInvalid
from sandbox.pricing import price_list
from sandbox.web.pages import ROLES, bp, roles, services, who

MAX_MOCK_ROWS = 10_000


def _matches(d: dict, q: str) -> bool:
    if not q:
        return True
    hay = " ".join(str(d.get(k) or "") for k in ("name", "title", "description", "provider", "topic"))
    hay += " " + " ".join(c["name"] + " " + (c.get("description") or "") for c in d["columns"])
    return all(word in hay.lower() for word in q.lower().split())


@bp.get("/catalog")
def catalog():  # type: ignore[no-untyped-def]
    cat = services().catalog
    datasets = [cat.describe(name) for name in cat.names()]
    chosen = {k: (request.args.get(k) or "").strip() for k in ("q", "openness", "grade", "provider", "topic")}
    options = {k: sorted({d[k] for d in datasets if d.get(k)}) for k in ("openness", "grade", "provider", "topic")}
    shown = [
        d for d in datasets
        if _matches(d, chosen["q"]) and all(not chosen[k] or d.get(k) == chosen[k]
                                            for k in ("openness", "grade", "provider", "topic"))
    ]
    return render_template("pages/catalog.html", datasets=shown, total=len(datasets), chosen=chosen,
                           options=options)


def example_script(d: dict) -> str:
    """A first script for this dataset, built from its public schema only."""
    usable = [c for c in d["columns"] if c["tag"] != "identifier"]
    group = next((c["name"] for c in usable if c["type"] in ("category", "boolean")), None)
    numeric = next((c["name"] for c in usable if c["type"] in ("integer", "float") and c.get("bounds")), None)
    lines = ["from sandbox import sdk", "", f'data = sdk.dataset("{d["name"]}")']
    aggs = ["rows=sdk.count()"] + ([f'mean_{numeric}=sdk.mean("{numeric}")'] if numeric else [])
    if group:
        lines.append(f'table = data.groupby("{group}").agg({", ".join(aggs)}, epsilon=0.5)')
    else:
        lines.append(f"table = data.agg({', '.join(aggs)}, epsilon=0.5)")
    lines += ["print(table.to_string(index=False))",
              'table.to_csv(sdk.output("summary.csv"), index=False)',
              "print(sdk.budget())"]
    return "\n".join(lines) + "\n"


def holders(name: str) -> list[dict]:
    """Who holds an active grant on the dataset (public: organisation, purpose, term, user type)."""
    svc = services()
    orgs: dict[str, str | None] = {}
    out = []
    for g in svc.grants.list():
        if name not in g["datasets"] or g["status"] != "active":
            continue
        if g["analyst"] not in orgs:
            try:
                orgs[g["analyst"]] = svc.users.get(g["analyst"]).get("organisation")
            except Exception:  # noqa: BLE001 - a grant made for a user not (yet) in Users
                orgs[g["analyst"]] = None
        out.append({"holder": orgs[g["analyst"]] or g["analyst"], "purpose": g["purpose"],
                    "user_type": g["user_type"], "since": g["created_at"], "until": g["expires_at"]})
    return out


@bp.get("/catalog/<name>")
def dataset(name: str):  # type: ignore[no-untyped-def]
    svc = services()
    d = svc.catalog.describe(name)
    actor = who()
    usage = None
    if actor.role == "operator" or (actor.role == "provider" and svc.catalog.get(name).owner == actor.name):
        usage = _usage(name)
    prices = None
    if d.get("prices") and d["openness"] != "not_open":
        try:
            prices = price_list(name, d["prices"])  # normalised: currency, every rate
        except PolicyInvalid:
            prices = None
    return render_template("pages/dataset.html", d=d, example=example_script(d), holders=holders(name),
                           usage=usage, prices=prices)


def _usage(name: str) -> dict:
    """What the API's /datasets/<name>/usage gives a provider or operator."""
    svc = services()
    rows = []
    for g in svc.grants.list():
        if name not in g["datasets"]:
            continue
        budget = next((b for b in svc.grants.get(g["id"])["budgets"] if b["dataset"] == name), None)
        rows.append({**g, "budget": budget})
    entries = svc.audit.entries(dataset=name)
    return {"grants": rows,
            "released": sum(1 for e in entries if e["action"] == "query.released"),
            "refused": sum(1 for e in entries if e["action"] == "query.refused")}


@bp.get("/catalog/<name>/mock.csv")
@roles(*ROLES)
def mock_csv(name: str):  # type: ignore[no-untyped-def]
    try:
        rows = int(request.args.get("rows", 100))
    except ValueError:
        abort(400)
    rows = max(1, min(rows, MAX_MOCK_ROWS))
    frame = services().catalog.mock(name, rows=rows, seed=0)
    return Response(frame.write_csv(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}-mock.csv"',
                             "X-Sandbox-Mock": "true"})
