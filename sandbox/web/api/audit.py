"""The audit log for reviewers (and operators): list, one entry with its proof, checkpoints,
consistency proofs, verify, export. Everything here reads; nothing changes the log except
the ``audit.exported`` entry an export leaves.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from apiflask import APIBlueprint
from apiflask.schemas import FileSchema
from flask import Response, g
from sqlalchemy import select

from sandbox.audit import signing
from sandbox.audit.models import AuditCheckpoint
from sandbox.web.auth import actor, requires, services
from sandbox.web.errors import ApiError
from sandbox.web.schemas import AuditArgs, ConsistencyArgs, query

bp = APIBlueprint("audit", __name__, tag="audit")

READERS = ("reviewer", "operator")


def _checkpoints() -> list[dict]:
    with services().db.transaction() as session:
        rows = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size))
        return [{k: getattr(cp, k) for k in signing.CHECKPOINT_FIELDS} for cp in rows]


@bp.get("/audit/entries")
@requires(*READERS)
@query(bp, AuditArgs)
def list_entries(args: dict):  # type: ignore[no-untyped-def]
    """Entries oldest first, filtered by actor, action, grant, dataset and time; ``last`` keeps the newest N."""
    return services().audit.entries(
        last=args.get("last"), action=args.get("action"), actor=args.get("actor"),
        grant_id=args.get("grant"), dataset=args.get("dataset"),
        since=args.get("since"), until=args.get("until"),
    )


@bp.get("/audit/entries/<int:seq>")
@requires(*READERS)
def show_entry(seq: int):  # type: ignore[no-untyped-def]
    """One entry in full with its inclusion proof against the latest signed checkpoint."""
    return services().audit.entry(seq)


@bp.get("/audit/checkpoint")
@requires(*READERS)
def latest_checkpoint():  # type: ignore[no-untyped-def]
    """The latest signed checkpoint (size, root, time, key id, Ed25519 signature)."""
    found = _checkpoints()
    if not found:
        raise ApiError(404, "not_found", "no checkpoint has been signed yet", "try again after the next change")
    return found[-1]


@bp.get("/audit/checkpoints")
@requires(*READERS)
def list_checkpoints():  # type: ignore[no-untyped-def]
    """Every signed checkpoint, smallest first."""
    return _checkpoints()


@bp.get("/audit/consistency")
@requires(*READERS)
@query(bp, ConsistencyArgs)
def consistency(args: dict):  # type: ignore[no-untyped-def]
    """Proof that the tree of ``old`` entries is a prefix of the tree of ``new`` entries."""
    old, new = args["old"], args["new"]
    proof = services().audit.consistency(old, new)
    by_size = {cp["size"]: cp for cp in _checkpoints()}
    return {"old": old, "new": new, "proof": proof,
            "old_checkpoint": by_size.get(old), "new_checkpoint": by_size.get(new)}


@bp.get("/audit/verify")
@requires(*READERS)
def verify():  # type: ignore[no-untyped-def]
    """Recompute every leaf and checkpoint root and check the signatures and both stores."""
    report = services().audit.verify()
    return {"ok": report.ok, "entries": report.size, "checkpoints": report.checkpoints,
            "problems": report.problems}


@bp.get("/audit/key")
@requires(*READERS)
@bp.output(FileSchema, content_type="application/x-pem-file", description="the public key (PEM)")
def verify_key():  # type: ignore[no-untyped-def]
    """The Ed25519 public key that signs checkpoints (give it to offline verifiers)."""
    return Response(signing.public_pem(services().audit.public_key), mimetype="application/x-pem-file")


def _export(file: str) -> Response:
    who = actor()
    log = services().audit
    if file == "entries.jsonl":
        log.append(actor=who.name, role=who.role, action="audit.exported")
        g.audited = True
    log.checkpoint()
    folder = Path(tempfile.mkdtemp(prefix="sandbox-audit-export-"))
    try:
        log.export(folder / "out")
        data = (folder / "out" / file).read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Response(data, mimetype="application/jsonl",
                    headers={"Content-Disposition": f'attachment; filename="{file}"'})


@bp.get("/audit/export")
@requires(*READERS)
@bp.output(FileSchema, content_type="application/jsonl", description="entries.jsonl")
def export_entries():  # type: ignore[no-untyped-def]
    """Every entry as JSONL, each line the exact bytes that were hashed (see docs/audit.md)."""
    return _export("entries.jsonl")


@bp.get("/audit/export/checkpoints")
@requires(*READERS)
@bp.output(FileSchema, content_type="application/jsonl", description="checkpoints.jsonl")
def export_checkpoints():  # type: ignore[no-untyped-def]
    """Every signed checkpoint as JSONL, for offline verification."""
    return _export("checkpoints.jsonl")
