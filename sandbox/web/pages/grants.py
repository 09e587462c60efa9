"""Grants and budget: scope, term, a gauge of the budget spent and left, past queries."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from sandbox.errors import InvalidInput, SandboxError
from sandbox.web.pages import bp, charts, fmt_number, require_own, roles, services, who

READERS = ("operator", "reviewer", "analyst")


def visible_grant(grant_id: str) -> dict:
    """The grant with its budgets if the reader may see it: an analyst only its own (else 404)."""
    info = services().grants.get(grant_id)
    require_own("grant", grant_id, info["analyst"])
    return info


@bp.get("/grants")
@roles(*READERS)
def grants():  # type: ignore[no-untyped-def]
    actor = who()
    svc = services()
    rows = svc.grants.list(actor.name if actor.role == "analyst" else None)
    rows.sort(key=lambda g: g["created_at"], reverse=True)
    for g in rows:
        g["budgets"] = svc.grants.get(g["id"])["budgets"]
    return render_template("pages/grants.html", grants=rows)


@bp.get("/grants/<grant_id>")
@roles(*READERS)
def grant(grant_id: str):  # type: ignore[no-untyped-def]
    info = visible_grant(grant_id)
    history = services().broker.history(grant_id)
    def gauge(b: dict):  # type: ignore[no-untyped-def]
        return charts.gauge(b["epsilon_spent"], b["epsilon_total"], lambda v: fmt_number(v, 3),
                            _("spent"), _("left"))

    return render_template("pages/grant.html", g=info, history=history, gauge=gauge)


@bp.post("/grants/<grant_id>/revoke")
@roles("operator")
def revoke_grant(grant_id: str):  # type: ignore[no-untyped-def]
    reason = (request.form.get("reason") or "").strip()
    try:
        if not reason:
            raise InvalidInput(_("Give the reason for revoking the grant."), "")
        services().grants.revoke(who(), grant_id, reason)
        flash(_("Grant %(id)s was revoked; running jobs on it are stopped.", id=grant_id), "ok")
    except SandboxError as err:
        flash(err.message, "error")
    return redirect(url_for("pages.grant", grant_id=grant_id))


@bp.post("/grants/<grant_id>/extend")
@roles("operator")
def extend_grant(grant_id: str):  # type: ignore[no-untyped-def]
    try:
        days = int(request.form.get("days") or 0)
        if days < 1:
            raise ValueError
        services().grants.extend(who(), grant_id, days)
        flash(_("Grant %(id)s was extended by %(days)d days.", id=grant_id, days=days), "ok")
    except ValueError:
        flash(_("Give a whole number of days, at least 1."), "error")
    except SandboxError as err:
        flash(err.message, "error")
    return redirect(url_for("pages.grant", grant_id=grant_id))
