"""The audit log: every action of the platform, append-only and verifiable offline.

Entries are the leaves of an RFC 6962 Merkle tree (leaf = SHA-256(0x00 || canonical bytes)).
Signed checkpoints (tree size, root, time) are stored in the database and appended to a
JSONL file outside it, so rewriting history needs both the signing key and both stores.

When checkpoints are signed: ``record()`` runs inside the caller's transaction, where
signing would be wrong (the entry might still roll back). When an entry brings the size to
a multiple of ``every``, ``record()`` marks the session; once that session's transaction has
ended and released its connection, a listener signs, in a fresh transaction, the largest
multiple of ``every`` the committed log has reached, unless a checkpoint already covers it
(after a rollback nothing new is committed, so nothing happens). Callers also call
``checkpoint()`` at the end of every CLI command, so no entry stays uncovered for long.
"""
from __future__ import annotations

import bisect
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Text, cast, event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction

from sandbox.audit import merkle, signing
from sandbox.audit.canonical import (
    ENTRY_FIELDS, canonical_bytes, canonical_json, format_time, utc_now,
)
from sandbox.audit.models import AuditCheckpoint, AuditEntry
from sandbox.audit.verify import VerifyReport, check_log, read_checkpoint_file
from sandbox.db import Database
from sandbox.errors import AlreadyExists, InvalidInput, NotFound, SandboxError

log = logging.getLogger(__name__)

#: PostgreSQL advisory lock serialising audit appends and checkpoints ("AUDITLOG" in ASCII).
_PG_LOCK_KEY = 0x4155_4449_544C_4F47
_CHECKPOINT_DUE = "sandbox.audit.checkpoint_due"
_LISTENING = "sandbox.audit.listening"

EXPORT_FILES = ("entries.jsonl", "checkpoints.jsonl", "audit-signing.pub")


class AuditDamaged(SandboxError):
    """The log in the database is not a gap-free sequence: refuse to sign over it."""

    code = "audit_damaged"


def _checkpoint_dict(cp: AuditCheckpoint) -> dict[str, Any]:
    return {k: getattr(cp, k) for k in signing.CHECKPOINT_FIELDS}


def _entry_dict(row: AuditEntry) -> dict[str, Any]:
    return {k: getattr(row, k) for k in ENTRY_FIELDS}


def _as_time(value: datetime | str) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as e:
            raise InvalidInput(f"{value!r} is not an ISO-8601 time", "e.g. 2025-01-31T08:00:00Z") from e
    return format_time(value)


class AuditLog:
    def __init__(self, db: Database, signing_key: Path, checkpoint_file: Path, every: int = 64) -> None:
        if every < 1:
            raise InvalidInput(f"checkpoint interval {every} must be at least 1", "use e.g. 64")
        self.db = db
        self.checkpoint_file = checkpoint_file
        self.every = every
        self._key = signing.load_private_key(signing_key)
        self.public_key = self._key.public_key()
        self.key_id = signing.key_id(self.public_key)

    @staticmethod
    def create_signing_key(private_path: Path, public_path: Path) -> None:
        """A new Ed25519 key pair as PEM: private 0600, public 0644; never overwrites."""
        signing.create_keypair(private_path, public_path)

    # -- writing -------------------------------------------------------------------------

    def _lock(self, session: Session) -> None:
        """Serialise appends. SQLite transactions already begin IMMEDIATE (see sandbox.db)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})

    def record(
        self,
        session: Session,
        *,
        actor: str,
        role: str,
        action: str,
        outcome: str = "ok",
        objects: dict[str, Any] | None = None,
        dataset_version: str | None = None,
        grant_id: str | None = None,
        purpose: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry inside the caller's transaction; returns its seq.

        The entry commits or rolls back with the caller's work (a budget charge and its
        entry are stored together or not at all).
        """
        try:  # normalise to exactly what JSON will give back when the row is read
            objects_json = json.loads(canonical_json(objects or {}))
            details_json = json.loads(canonical_json(details or {}))
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"audit entry for {action!r} is not plain JSON: {e}",
                               "pass only str, numbers, booleans, None, lists and dicts") from e
        self._lock(session)
        seq: int = session.scalar(select(func.coalesce(func.max(AuditEntry.seq) + 1, 0)))
        entry = {
            "seq": seq, "time": utc_now(), "actor": actor, "role": role, "action": action,
            "outcome": outcome, "objects": objects_json, "dataset_version": dataset_version,
            "grant_id": grant_id, "purpose": purpose, "details": details_json,
        }
        try:
            leaf = merkle.leaf_hash(canonical_bytes(entry)).hex()
        except UnicodeEncodeError as e:
            raise InvalidInput(f"audit entry for {action!r} is not valid UTF-8", "drop the stray characters") from e
        session.add(AuditEntry(**entry, leaf_hash=leaf))
        session.flush()
        if (seq + 1) % self.every == 0:
            self._checkpoint_when_done(session)
        return seq

    def append(self, **kw: Any) -> int:
        """``record()`` in a transaction of its own."""
        with self.db.transaction() as session:
            return self.record(session, **kw)

    def _checkpoint_when_done(self, session: Session) -> None:
        session.info[_CHECKPOINT_DUE] = True
        if not session.info.get(_LISTENING):
            session.info[_LISTENING] = True
            event.listen(session, "after_transaction_end", self._after_transaction_end)

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        """Runs after the outermost transaction released its connection (commit or rollback)."""
        if transaction.parent is not None or not session.info.pop(_CHECKPOINT_DUE, False):
            return
        try:
            self._checkpoint(due_only=True)
        except Exception:  # the entry is committed; the next checkpoint() will cover it
            log.exception("audit checkpoint failed; it will be retried at the next checkpoint")

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current tree if it grew since the last checkpoint; returns the checkpoint."""
        return self._checkpoint(due_only=False)

    def _checkpoint(self, *, due_only: bool) -> dict[str, Any] | None:
        with self.db.transaction() as session:
            self._lock(session)
            rows = session.execute(select(AuditEntry.seq, AuditEntry.leaf_hash).order_by(AuditEntry.seq)).all()
            size = len(rows)
            if rows and rows[-1].seq != size - 1:
                raise AuditDamaged("the audit log has gaps in its sequence numbers; no checkpoint was signed",
                                   "run `sandbox audit verify` to see which entries are missing")
            last = self._restore_from_file(session, rows, session.scalar(select(func.max(AuditCheckpoint.size))) or 0)
            if due_only:  # the boundary itself, even if other writers have appended since
                size = size // self.every * self.every
            if size <= last:
                return None
            root = merkle.root([bytes.fromhex(r.leaf_hash) for r in rows[:size]]).hex()
            cp = signing.sign_checkpoint(self._key, size, root, utc_now())
            session.add(AuditCheckpoint(**cp))
            session.flush()
            # Written while the transaction still holds the lock, so the file stays in order.
            self._append_to_file(cp)
        return cp

    def _restore_from_file(self, session: Session, rows: list[Any], last: int) -> int:
        """Put back checkpoints the file has but the database lost (a process killed between
        the file append and the commit), if they verify; returns the newest size signed."""
        filed, _ = read_checkpoint_file(self.checkpoint_file)
        for cp in sorted((c for c in filed if last < c["size"] <= len(rows)), key=lambda c: c["size"]):
            root = merkle.root([bytes.fromhex(r.leaf_hash) for r in rows[:cp["size"]]]).hex()
            if cp["size"] > last and cp["root"] == root and signing.signature_valid(self.public_key, cp):
                session.add(AuditCheckpoint(**{k: cp[k] for k in signing.CHECKPOINT_FIELDS}))
                session.flush()
                last = cp["size"]
        return last

    def _append_to_file(self, cp: dict[str, Any]) -> None:
        self.checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.checkpoint_file, "a", encoding="utf-8") as f:
            f.write(canonical_json(cp) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # -- reading -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Recompute every leaf and every checkpoint root; check signatures and both stores."""
        table = AuditEntry.__table__
        columns = [cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c for c in table.c]
        with self.db.transaction() as session:
            rows = [dict(r._mapping) for r in session.execute(select(*columns).order_by(table.c.seq))]
            stored = [_checkpoint_dict(cp) for cp in session.scalars(select(AuditCheckpoint))]
        filed, file_problems = read_checkpoint_file(self.checkpoint_file)
        if stored and not self.checkpoint_file.exists():
            file_problems.append(f"checkpoint file {self.checkpoint_file} is missing")
        report = check_log(rows, stored, filed, self.public_key)
        problems = file_problems + report.problems
        return VerifyReport(ok=not problems, size=report.size, checkpoints=report.checkpoints,
                            problems=problems)

    def entries(
        self,
        *,
        last: int | None = None,
        action: str | None = None,
        actor: str | None = None,
        grant_id: str | None = None,
        dataset: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Entries in seq order, filtered; ``last`` keeps the most recent N that match.

        ``dataset`` matches ``objects["dataset"]`` or membership in ``objects["datasets"]``;
        ``since`` is inclusive, ``until`` exclusive. Each entry carries ``checkpoint``: the
        size of the first checkpoint that covers it (None while none does).
        """
        stmt = select(AuditEntry)
        for column, value in ((AuditEntry.action, action), (AuditEntry.actor, actor),
                              (AuditEntry.grant_id, grant_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        if since is not None:
            stmt = stmt.where(AuditEntry.time >= _as_time(since))
        if until is not None:
            stmt = stmt.where(AuditEntry.time < _as_time(until))
        newest_first = last is not None and dataset is None  # let the database apply the limit
        stmt = stmt.order_by(AuditEntry.seq.desc() if newest_first else AuditEntry.seq)
        if newest_first:
            stmt = stmt.limit(last)
        with self.db.transaction() as session:
            rows = list(session.scalars(stmt))
            sizes = list(session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size)))
        if newest_first:
            rows.reverse()
        if dataset is not None:
            rows = [r for r in rows if r.objects.get("dataset") == dataset
                    or dataset in (r.objects.get("datasets") or [])]
            if last is not None:
                rows = rows[-last:] if last else []
        out = []
        for row in rows:
            i = bisect.bisect_right(sizes, row.seq)
            out.append({**_entry_dict(row), "leaf_hash": row.leaf_hash,
                        "checkpoint": sizes[i] if i < len(sizes) else None})
        return out

    def entry(self, seq: int) -> dict[str, Any]:
        """One entry with its inclusion proof against the latest checkpoint.

        An entry no checkpoint covers yet (appended moments ago) gets one signed on demand, so
        a reviewer never has to wait for the end of someone else's command to get a proof.
        """
        with self.db.transaction() as session:
            if session.get(AuditEntry, seq) is None:
                raise NotFound(f"no audit entry {seq}", "list entries with `sandbox audit show`")
            covered = (session.scalar(select(func.max(AuditCheckpoint.size))) or 0) > seq
        if not covered:
            self.checkpoint()
        with self.db.transaction() as session:
            row = session.get(AuditEntry, seq)
            latest = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)).first()
            hashes = []
            if latest is not None and latest.size > seq:
                hashes = list(session.scalars(
                    select(AuditEntry.leaf_hash).where(AuditEntry.seq < latest.size).order_by(AuditEntry.seq)))
        inclusion = None
        if hashes:
            proof = merkle.inclusion_proof(seq, [bytes.fromhex(h) for h in hashes])
            inclusion = {"checkpoint": _checkpoint_dict(latest), "proof": [p.hex() for p in proof]}
        return {**_entry_dict(row), "leaf_hash": row.leaf_hash, "inclusion": inclusion}

    def consistency(self, old_size: int, new_size: int) -> list[str]:
        """Proof (hex) that the tree of ``old_size`` entries is a prefix of that of ``new_size``."""
        with self.db.transaction() as session:
            hashes = list(session.scalars(
                select(AuditEntry.leaf_hash).where(AuditEntry.seq < new_size).order_by(AuditEntry.seq)))
        if not 0 <= old_size <= new_size <= len(hashes):
            raise InvalidInput(f"sizes {old_size} and {new_size} do not fit a log of {len(hashes)} entries",
                               "pick 0 <= old <= new <= the log's size")
        return [p.hex() for p in merkle.consistency_proof(old_size, [bytes.fromhex(h) for h in hashes])]

    def export(self, out_dir: Path) -> dict[str, int]:
        """entries.jsonl (each line the exact hashed bytes), checkpoints.jsonl and the public key.

        Everything a reviewer needs to verify the log offline (see docs/audit.md); returns
        how many entries and checkpoints were written.
        """
        targets = [out_dir / name for name in EXPORT_FILES]
        taken = [str(t) for t in targets if t.exists()]
        if taken:
            raise AlreadyExists(f"export would overwrite {', '.join(taken)}", "export into an empty folder")
        with self.db.transaction() as session:  # one snapshot of entries and checkpoints
            rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
            checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
        out_dir.mkdir(parents=True, exist_ok=True)
        entries_path, checkpoints_path, key_path = targets
        entries_path.write_bytes(b"".join(canonical_bytes(_entry_dict(r)) + b"\n" for r in rows))
        checkpoints_path.write_text(
            "".join(canonical_json(_checkpoint_dict(cp)) + "\n" for cp in checkpoints), "utf-8")
        key_path.write_bytes(signing.public_pem(self.public_key))
        return {"entries": len(rows), "checkpoints": len(checkpoints)}
