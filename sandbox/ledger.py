"""The privacy ledger: per grant and dataset, the epsilon and delta granted, spent and left.

Budgets are stored as whole numbers of nano-epsilon (delta in units of 1e-12) so that
"never overspend" is exact integer arithmetic, not a float comparison. A charge is
reserved by one conditional UPDATE that succeeds only if it fits; the database makes it
atomic, so concurrent jobs can never overspend a grant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import BigInteger, ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.db import Base, UTCDateTime
from sandbox.errors import BudgetExceeded, NotFound

EPSILON_UNIT = 10**9
DELTA_UNIT = 10**12


def to_units(value: float, unit: int) -> int:
    """Round a charge up, so the recorded spend is never less than the real one."""
    return math.ceil(round(value * unit, 6))


class Budget(Base):
    __tablename__ = "budgets"

    grant_id: Mapped[str] = mapped_column(String(40), ForeignKey("grants.id"), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100), primary_key=True)
    epsilon_total: Mapped[int] = mapped_column(BigInteger)
    epsilon_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_total: Mapped[int] = mapped_column(BigInteger)
    delta_spent: Mapped[int] = mapped_column(BigInteger, default=0)


class Charge(Base):
    """One reservation: what was spent, on which question, and the audit entry recording it."""

    __tablename__ = "charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    grant_id: Mapped[str] = mapped_column(String(40), ForeignKey("grants.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    query_digest: Mapped[str] = mapped_column(String(64))
    epsilon: Mapped[int] = mapped_column(BigInteger)
    delta: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


@dataclass(frozen=True)
class BudgetView:
    dataset: str
    epsilon_total: float
    epsilon_spent: float
    delta_total: float
    delta_spent: float

    @property
    def epsilon_left(self) -> float:
        return self.epsilon_total - self.epsilon_spent

    @property
    def delta_left(self) -> float:
        return self.delta_total - self.delta_spent

    def to_dict(self) -> dict[str, float | str]:
        return {
            "dataset": self.dataset,
            "epsilon_total": self.epsilon_total,
            "epsilon_spent": self.epsilon_spent,
            "epsilon_left": self.epsilon_left,
            "delta_total": self.delta_total,
            "delta_spent": self.delta_spent,
            "delta_left": self.delta_left,
        }


def _view(row: Budget) -> BudgetView:
    return BudgetView(
        dataset=row.dataset,
        epsilon_total=row.epsilon_total / EPSILON_UNIT,
        epsilon_spent=row.epsilon_spent / EPSILON_UNIT,
        delta_total=row.delta_total / DELTA_UNIT,
        delta_spent=row.delta_spent / DELTA_UNIT,
    )


def open_budget(session: Session, grant_id: str, dataset: str, epsilon: float, delta: float) -> None:
    session.add(
        Budget(
            grant_id=grant_id,
            dataset=dataset,
            epsilon_total=to_units(epsilon, EPSILON_UNIT),
            epsilon_spent=0,
            delta_total=to_units(delta, DELTA_UNIT),
            delta_spent=0,
        )
    )


def budget(session: Session, grant_id: str, dataset: str) -> BudgetView:
    row = session.get(Budget, (grant_id, dataset))
    if row is None:
        raise NotFound(
            f"grant {grant_id} has no budget on dataset {dataset}",
            "ask the operator to add the dataset to the grant",
        )
    session.refresh(row)
    return _view(row)


def budgets(session: Session, grant_id: str) -> list[BudgetView]:
    rows = session.scalars(select(Budget).where(Budget.grant_id == grant_id).order_by(Budget.dataset))
    return [_view(r) for r in rows]


def reserve(
    session: Session,
    grant_id: str,
    dataset: str,
    epsilon: float,
    delta: float,
    query_digest: str,
    job_id: str | None = None,
) -> BudgetView:
    """Spend ``epsilon``/``delta`` now, before anything is released, or raise BudgetExceeded.

    Runs inside the caller's transaction so the charge and its audit entry commit together.
    """
    eps, dlt = to_units(epsilon, EPSILON_UNIT), to_units(delta, DELTA_UNIT)
    result = session.execute(
        update(Budget)
        .where(
            Budget.grant_id == grant_id,
            Budget.dataset == dataset,
            Budget.epsilon_spent + eps <= Budget.epsilon_total,
            Budget.delta_spent + dlt <= Budget.delta_total,
        )
        .values(epsilon_spent=Budget.epsilon_spent + eps, delta_spent=Budget.delta_spent + dlt)
    )
    if result.rowcount != 1:
        left = budget(session, grant_id, dataset)
        raise BudgetExceeded(
            f"this query costs epsilon {epsilon:g} (delta {delta:g}) but grant {grant_id} has "
            f"epsilon {left.epsilon_left:g} (delta {left.delta_left:g}) left on {dataset}",
            "ask for a smaller epsilon, reuse an earlier answer, or apply for more budget",
        )
    session.add(
        Charge(
            grant_id=grant_id,
            dataset=dataset,
            query_digest=query_digest,
            epsilon=eps,
            delta=dlt,
            time=datetime.now(timezone.utc),
            job_id=job_id,
        )
    )
    return budget(session, grant_id, dataset)
