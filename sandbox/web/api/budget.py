"""Budgets of a grant: what is left, the previous queries, a cost preview, and asking a query."""
from __future__ import annotations

from apiflask import APIBlueprint

from sandbox.web.api.grants import READERS, visible_grant
from sandbox.web.auth import actor, requires, services
from sandbox.web.schemas import QueryDoc, body

bp = APIBlueprint("budget", __name__, tag="budget")


@bp.get("/grants/<grant_id>/budget")
@requires(*READERS)
def grant_budget(grant_id: str):  # type: ignore[no-untyped-def]
    """Epsilon and delta granted, spent and left on each dataset (get_remaining_budget)."""
    return visible_grant(grant_id)["budgets"]


@bp.get("/grants/<grant_id>/history")
@requires(*READERS)
def grant_history(grant_id: str):  # type: ignore[no-untyped-def]
    """The queries asked under the grant, oldest first (get_previous_queries)."""
    visible_grant(grant_id)
    return services().broker.history(grant_id)


@bp.post("/grants/<grant_id>/preview")
@requires("analyst")
@body(bp, QueryDoc)
def preview_query(grant_id: str, data: dict):  # type: ignore[no-untyped-def]
    """What a query would cost and how accurate it would be, spending nothing (cost())."""
    visible_grant(grant_id)
    return services().broker.preview(actor(), grant_id, data["query"])


@bp.post("/grants/<grant_id>/query")
@requires("analyst")
@body(bp, QueryDoc)
def ask_query(grant_id: str, data: dict):  # type: ignore[no-untyped-def]
    """Ask one DP query under the grant; its cost is charged before the answer is computed."""
    visible_grant(grant_id)
    return services().broker.ask(actor(), grant_id, data["query"])
