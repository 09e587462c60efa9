"""Access applications: analysts apply, reply and withdraw (their own); operators decide.

The operator's queue is sorted by deadline, with working days left and overdue flags.
Reviewers read every application; an analyst reads only its own (others' are a 404).
"""
from __future__ import annotations

from apiflask import APIBlueprint

from sandbox.web.auth import actor, require_own, requires, services
from sandbox.web.schemas import (
    ApplicationApprove, ApplicationAsk, ApplicationCreate, ApplicationListArgs, ApplicationRefuse,
    ApplicationReply, body, query,
)

bp = APIBlueprint("applications", __name__, tag="applications")

READERS = ("analyst", "operator", "reviewer")
HINT = "list your applications with `sandbox application list`"


def visible_application(app_id: str) -> dict:
    info = services().applications.get(app_id)
    require_own("application", app_id, info["analyst"], HINT)
    return info


@bp.post("/applications")
@requires("analyst", status=201)
@body(bp, ApplicationCreate)
def apply(data: dict):  # type: ignore[no-untyped-def]
    """Apply for access: datasets, purpose, scenario, budget, term, user type."""
    return services().applications.apply(actor(), **data), 201


@bp.get("/applications")
@requires(*READERS)
@query(bp, ApplicationListArgs)
def list_applications(args: dict):  # type: ignore[no-untyped-def]
    """An analyst's own applications, or the queue (soonest deadline first) for operators and reviewers."""
    who = actor()
    analyst = args.get("analyst")
    if who.role == "analyst":
        if analyst not in (None, who.name):
            return []
        analyst = who.name
    return services().applications.list(analyst=analyst, state=args.get("state"), overdue=args.get("overdue"))


@bp.get("/applications/<app_id>")
@requires(*READERS)
def show_application(app_id: str):  # type: ignore[no-untyped-def]
    """One application with its deadline, days left and its history of messages."""
    return visible_application(app_id)


@bp.post("/applications/<app_id>/approve")
@requires("operator")
@body(bp, ApplicationApprove)
def approve(app_id: str, data: dict):  # type: ignore[no-untyped-def]
    """Approve (the grant is made in the same transaction); epsilon and days may override the request."""
    return services().applications.approve(actor(), app_id, **data)


@bp.post("/applications/<app_id>/refuse")
@requires("operator")
@body(bp, ApplicationRefuse)
def refuse(app_id: str, data: dict):  # type: ignore[no-untyped-def]
    """Refuse with a reason (the analyst is told it)."""
    return services().applications.refuse(actor(), app_id, data["reason"])


@bp.post("/applications/<app_id>/ask")
@requires("operator")
@body(bp, ApplicationAsk)
def ask_info(app_id: str, data: dict):  # type: ignore[no-untyped-def]
    """Ask the applicant for more information (the deadline's clock pauses)."""
    return services().applications.ask_info(actor(), app_id, data["question"])


@bp.post("/applications/<app_id>/reply")
@requires("analyst")
@body(bp, ApplicationReply)
def reply(app_id: str, data: dict):  # type: ignore[no-untyped-def]
    """Answer the operator's question (the clock resumes)."""
    visible_application(app_id)
    return services().applications.reply(actor(), app_id, data["text"])


@bp.post("/applications/<app_id>/withdraw")
@requires("analyst")
def withdraw(app_id: str):  # type: ignore[no-untyped-def]
    """Withdraw an open application."""
    visible_application(app_id)
    return services().applications.withdraw(actor(), app_id)
