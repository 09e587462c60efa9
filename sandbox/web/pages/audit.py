"""The audit explorer (reviewers and operators): filter, one entry with its inclusion proof,
verify the whole log against the latest signed checkpoint. Nothing here changes the log."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import render_template, request
from flask_babel import gettext as _
from sqlalchemy import select

from sandbox.audit import merkle, signing
from sandbox.audit.models import AuditCheckpoint, AuditEntry
from sandbox.errors import InvalidInput
from sandbox.web.pages import bp, roles, services

READERS = ("reviewer", "operator")
FILTERS = ("actor", "dataset", "grant", "action", "since", "until")
LIMIT = 200


def _time(value: str, field: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(_("%(field)s is not a date and time.", field=field), "") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _latest_checkpoint() -> dict | None:
    with services().db.transaction() as session:
        cp = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)).first()
        return {k: getattr(cp, k) for k in signing.CHECKPOINT_FIELDS} if cp else None


@bp.get("/audit")
@roles(*READERS)
def audit():  # type: ignore[no-untyped-def]
    svc = services()
    chosen = {k: (request.args.get(k) or "").strip() for k in FILTERS}
    error = None
    entries: list[dict] = []
    try:
        entries = svc.audit.entries(
            last=LIMIT, actor=chosen["actor"] or None, dataset=chosen["dataset"] or None,
            grant_id=chosen["grant"] or None, action=chosen["action"] or None,
            since=_time(chosen["since"], _("From")), until=_time(chosen["until"], _("Until")),
        )
    except InvalidInput as err:
        error = err.message
    entries.reverse()  # newest first
    with svc.db.transaction() as session:
        actions = sorted(session.scalars(select(AuditEntry.action).distinct()))
        actors = sorted(session.scalars(select(AuditEntry.actor).distinct()))
    return render_template("pages/audit.html", entries=entries, chosen=chosen, actions=actions, actors=actors,
                           datasets=svc.catalog.names(), error=error, limit=LIMIT,
                           checkpoint=_latest_checkpoint())


@bp.get("/audit/<int:seq>")
@roles(*READERS)
def audit_entry(seq: int):  # type: ignore[no-untyped-def]
    entry = services().audit.entry(seq)
    proof_ok = None
    inc = entry.get("inclusion")
    if inc:
        cp = inc["checkpoint"]
        proof_ok = merkle.verify_inclusion(
            seq, cp["size"], bytes.fromhex(entry["leaf_hash"]), [bytes.fromhex(p) for p in inc["proof"]],
            bytes.fromhex(cp["root"]))
    return render_template("pages/audit_entry.html", e=entry, proof_ok=proof_ok)


@bp.route("/audit/verify", methods=["GET", "POST"])
@roles(*READERS)
def audit_verify():  # type: ignore[no-untyped-def]
    report = None
    if request.method == "POST":
        report = services().audit.verify()
    svc = services()
    return render_template("pages/audit_verify.html", report=report, checkpoint=_latest_checkpoint(),
                           key_id=svc.audit.key_id,
                           public_key=signing.public_pem(svc.audit.public_key).decode("ascii"))
