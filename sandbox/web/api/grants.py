"""Grants: operators make, revoke and extend them; analysts see their own; reviewers read."""
from __future__ import annotations

from apiflask import APIBlueprint

from sandbox.web.auth import actor, require_own, requires, services
from sandbox.web.schemas import GrantCreate, GrantExtend, GrantListArgs, GrantRevoke, body, query

bp = APIBlueprint("grants", __name__, tag="grants")

READERS = ("operator", "reviewer", "analyst")


def visible_grant(grant_id: str) -> dict:
    """The grant with its budgets, if the caller may see it (an analyst: only its own; else 404)."""
    info = services().grants.get(grant_id)
    require_own("grant", grant_id, info["analyst"], "list your grants with `sandbox grant list`")
    return info


@bp.get("/grants")
@requires(*READERS)
@query(bp, GrantListArgs)
def list_grants(args: dict):  # type: ignore[no-untyped-def]
    """Grants: all of them for operators and reviewers, an analyst's own for an analyst."""
    who = actor()
    analyst = args.get("analyst")
    if who.role == "analyst":
        if analyst not in (None, who.name):
            return []
        analyst = who.name
    return services().grants.list(analyst)


@bp.get("/grants/<grant_id>")
@requires(*READERS)
def show_grant(grant_id: str):  # type: ignore[no-untyped-def]
    """One grant with its budget on each dataset."""
    return visible_grant(grant_id)


@bp.post("/grants")
@requires("operator", status=201)
@body(bp, GrantCreate)
def create_grant(data: dict):  # type: ignore[no-untyped-def]
    """Grant an analyst a budget on datasets for a purpose and a term."""
    return services().grants.create(actor(), **data), 201


@bp.post("/grants/<grant_id>/revoke")
@requires("operator")
@body(bp, GrantRevoke)
def revoke_grant(grant_id: str, data: dict):  # type: ignore[no-untyped-def]
    """Revoke a grant at once: running jobs on it are stopped and refused from now on."""
    return services().grants.revoke(actor(), grant_id, data["reason"])


@bp.post("/grants/<grant_id>/extend")
@requires("operator")
@body(bp, GrantExtend)
def extend_grant(grant_id: str, data: dict):  # type: ignore[no-untyped-def]
    """Extend an active grant's term by some days."""
    return services().grants.extend(actor(), grant_id, data["days"])
