"""Grants: who may ask what of which datasets, until when, with how much budget.

A grant is scoped (datasets, columns, operations), time-limited, budgeted and revocable.
Expiry and revocation are checked on every query, so they take effect at once, including
on jobs already running.
"""
from __future__ import annotations

import math
import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import JSON, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox import ledger
from sandbox.actors import Actor
from sandbox.audit import AuditLog
from sandbox.catalog import Catalog
from sandbox.db import Base, Database, UTCDateTime
from sandbox.errors import GrantInactive, InvalidInput, NotFound, PolicyRefused
from sandbox.policy import Openness, Policy, Tag

USER_TYPES = ("public_welfare", "commercial")


class Grant(Base):
    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    analyst: Mapped[str] = mapped_column(String(100), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    user_type: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Scope: dataset -> list of columns (None: every non-identifier column); operations (None: policy's).
    columns: Mapped[dict] = mapped_column(JSON)
    operations: Mapped[list | None] = mapped_column(JSON, nullable=True)

    @property
    def datasets(self) -> list[str]:
        return sorted(self.columns)

    def status(self, now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "analyst": self.analyst,
            "purpose": self.purpose,
            "user_type": self.user_type,
            "datasets": self.datasets,
            "columns": self.columns,
            "operations": self.operations,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoke_reason": self.revoke_reason,
            "status": self.status(),
        }


@dataclass(frozen=True)
class DatasetBudget:
    dataset: str
    epsilon: float
    delta: float
    columns: list[str] | None = None


def create(
    session: Session,
    *,
    analyst: str,
    purpose: str,
    budgets: list[DatasetBudget],
    days: int,
    created_by: str,
    user_type: str = "public_welfare",
    operations: list[str] | None = None,
) -> Grant:
    if not purpose.strip():
        raise InvalidInput("a grant needs a purpose", "say what the analysis is for with --purpose")
    if days <= 0:
        raise InvalidInput(f"a grant's term must be at least one day, not {days}", "pass --days 1 or more")
    if user_type not in USER_TYPES:
        raise InvalidInput(f"unknown user type {user_type!r}", f"use one of: {', '.join(USER_TYPES)}")
    if not budgets:
        raise InvalidInput("a grant needs at least one dataset", "pass --dataset NAME")
    names = [b.dataset for b in budgets]
    for name in sorted({n for n in names if names.count(n) > 1}):
        raise InvalidInput(f"dataset {name} is named twice", "pass each --dataset once")
    for b in budgets:
        _check_budget(b)
    now = datetime.now(timezone.utc)
    grant = Grant(
        id="g-" + secrets.token_hex(4),
        analyst=analyst,
        purpose=purpose.strip(),
        user_type=user_type,
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(days=days),
        columns={b.dataset: b.columns for b in budgets},
        operations=operations,
    )
    session.add(grant)
    session.flush()
    for b in budgets:
        ledger.open_budget(session, grant.id, b.dataset, b.epsilon, b.delta)
    return grant


#: Larger budgets would overflow the ledger's 64-bit integer units (and mean no privacy anyway).
MAX_EPSILON = 1e6


def _check_budget(b: DatasetBudget) -> None:
    if not isinstance(b.epsilon, (int, float)) or not math.isfinite(b.epsilon) or b.epsilon <= 0:
        raise InvalidInput(f"epsilon for {b.dataset} must be a positive number", "pass --epsilon greater than 0")
    if b.epsilon > MAX_EPSILON:
        raise InvalidInput(f"epsilon for {b.dataset} must be at most {MAX_EPSILON:g}",
                           "pass a smaller --epsilon")
    if not isinstance(b.delta, (int, float)) or not math.isfinite(b.delta) or not 0 <= b.delta < 1:
        raise InvalidInput(f"delta for {b.dataset} must be at least 0 and below 1",
                           "fix the delta of the dataset's policy")


def get(session: Session, grant_id: str, for_update: bool = False) -> Grant:
    grant = session.get(Grant, grant_id, with_for_update=for_update or None)
    if grant is None:
        raise NotFound(f"no grant {grant_id}", "list grants with `sandbox grant list`")
    return grant


def active(session: Session, grant_id: str, dataset: str | None = None) -> Grant:
    """The grant if it may be used now (and covers ``dataset``), else a clear refusal."""
    grant = get(session, grant_id)
    status = grant.status()
    if status == "revoked":
        raise GrantInactive(
            f"grant {grant_id} was revoked on {grant.revoked_at.date()}"
            + (f": {grant.revoke_reason}" if grant.revoke_reason else ""),
            "apply for a new grant",
        )
    if status == "expired":
        raise GrantInactive(
            f"grant {grant_id} expired on {grant.expires_at.date()}",
            "ask the operator to extend it or apply for a new grant",
        )
    if dataset is not None and dataset not in grant.columns:
        raise PolicyRefused(
            f"grant {grant_id} does not cover dataset {dataset}",
            f"it covers: {', '.join(grant.datasets)}; apply for access to {dataset}",
        )
    return grant


def revoke(session: Session, grant_id: str, by: str, reason: str) -> Grant:
    grant = get(session, grant_id, for_update=True)
    if grant.revoked_at is not None:
        raise GrantInactive(
            f"grant {grant_id} was already revoked on {grant.revoked_at.date()}",
            "nothing to do; `sandbox grant show` says why and by whom",
        )
    if not reason.strip():
        raise InvalidInput("a revocation needs a reason", "say why with --reason")
    grant.revoked_at = datetime.now(timezone.utc)
    grant.revoked_by = by
    grant.revoke_reason = reason.strip()
    return grant


def extend(session: Session, grant_id: str, days: int) -> Grant:
    """Lengthen a grant's term; an expired grant runs again from now (a revoked one stays revoked)."""
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise InvalidInput(f"a grant is extended by at least one day, not {days}", "pass --days 1 or more")
    grant = get(session, grant_id, for_update=True)
    if grant.status() == "revoked":
        active(session, grant_id)  # raises the revocation's own message
    grant.expires_at = max(grant.expires_at, datetime.now(timezone.utc)) + timedelta(days=days)
    return grant


def listing(session: Session, analyst: str | None = None) -> list[Grant]:
    query = select(Grant).order_by(Grant.created_at)
    if analyst:
        query = query.where(Grant.analyst == analyst)
    return list(session.scalars(query))


class Grants:
    """Grant operations as one role performs them: each change and its audit entry commit together."""

    def __init__(self, db: Database, audit: AuditLog, catalog: Catalog) -> None:
        self.db = db
        self.audit = audit
        self.catalog = catalog

    def create(
        self,
        actor: Actor,
        *,
        analyst: str,
        datasets: list[str],
        epsilon: float | None,
        days: int,
        purpose: str,
        user_type: str = "public_welfare",
        columns: list[str] | None = None,
        operations: list[str] | None = None,
        session: Session | None = None,
    ) -> dict:
        """Make a grant; with ``session`` it joins the caller's transaction (e.g. an approval)."""
        budgets = []
        for name in datasets:
            policy = self.catalog.policy(name, session)
            if policy.openness is Openness.NOT_OPEN:
                raise PolicyRefused(
                    f"dataset {name} is classed not open; no grant can be made on it",
                    "ask its provider to reclassify it, or choose another dataset",
                )
            if columns:
                _check_columns(policy, columns)
            if operations is not None:
                _check_operations(policy, operations)
            budgets.append(DatasetBudget(
                name, policy.default_epsilon_budget if epsilon is None else epsilon, policy.delta, columns
            ))
        with nullcontext(session) if session is not None else self.db.transaction() as session:
            grant = create(
                session, analyst=analyst, purpose=purpose, budgets=budgets, days=days,
                created_by=actor.name, user_type=user_type, operations=operations,
            )
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="grant.created",
                objects={"grant": grant.id, "analyst": analyst, "datasets": datasets},
                grant_id=grant.id, purpose=grant.purpose,
                details={"epsilon": {b.dataset: b.epsilon for b in budgets}, "days": days, "user_type": user_type,
                         "columns": columns, "operations": operations},
            )
            return grant.to_dict()

    def revoke(self, actor: Actor, grant_id: str, reason: str) -> dict:
        with self.db.transaction() as session:
            grant = revoke(session, grant_id, actor.name, reason)
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="grant.revoked",
                objects={"grant": grant_id}, grant_id=grant_id, purpose=grant.purpose,
                details={"reason": reason},
            )
            return grant.to_dict()

    def extend(self, actor: Actor, grant_id: str, days: int) -> dict:
        with self.db.transaction() as session:
            grant = extend(session, grant_id, days)
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="grant.extended",
                objects={"grant": grant_id}, grant_id=grant_id, purpose=grant.purpose,
                details={"days": days, "expires_at": grant.expires_at.isoformat()},
            )
            return grant.to_dict()

    def get(self, grant_id: str) -> dict:
        with self.db.transaction() as session:
            grant = get(session, grant_id)
            return {**grant.to_dict(), "budgets": [b.to_dict() for b in ledger.budgets(session, grant_id)]}

    def list(self, analyst: str | None = None) -> list[dict]:
        with self.db.transaction() as session:
            return [g.to_dict() for g in listing(session, analyst)]


def _check_operations(policy: Policy, operations: list[str]) -> None:
    allowed = sorted(policy.allowed_operations)
    if not operations:
        raise InvalidInput("a grant limited to no operations allows nothing",
                           f"leave out --operations, or name some of: {', '.join(allowed)}")
    for op in operations:
        if op not in allowed:
            raise InvalidInput(
                f"operation {op} is not allowed on dataset {policy.dataset}",
                f"its policy allows: {', '.join(allowed)}",
            )


def _check_columns(policy: Policy, columns: list[str]) -> None:
    for name in columns:
        if name not in policy.column_names:
            raise InvalidInput(
                f"dataset {policy.dataset} has no column {name}",
                f"its columns are: {', '.join(policy.column_names)}",
            )
        if policy.column(name).tag is Tag.IDENTIFIER:
            raise PolicyRefused(
                f"column {name} of {policy.dataset} is an identifier and can never be granted",
                "leave it out of --columns",
            )
