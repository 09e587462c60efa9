"""Prices and fees: free for public-welfare use, metered for commercial use, never above a ceiling.

Prices come from each dataset's policy (``prices:`` under ``defaults:`` or a dataset, kept in
``Policy.extra["prices"]``)::

    prices:
      currency: CNY
      public_welfare: free
      commercial: {per_query: 2.0, per_epsilon: 800.0, per_compute_second: 0.02, ceiling: 50000}

Decisions:

* Amounts are kept as whole minor units (fen: 1/100 of the currency unit), computed with
  ``Decimal`` and rounded half up, so "never above the ceiling" is exact integer arithmetic.
* A released (fresh, not cached) answer on dataset D costs ``per_query + per_epsilon * epsilon``
  at D's prices. Compute time of a job costs ``per_compute_second * seconds`` at the highest
  ``per_compute_second`` among the grant's datasets (compute is not tied to one dataset).
* The ceiling is per grant: the grant's fees in total never exceed the lowest ``ceiling``
  among its datasets' policies. A charge that would pass it is cut to exactly what is left
  (basis says so); after that, charges are recorded at 0.
* Every charge is a row of ``fees`` (zero for public-welfare use: those rows are the usage
  record). A charge with a non-zero amount, or one cut by the ceiling, is also audited
  (``fee.charged``); a free one is not (the query or job is audited already).
* Charges run inside the caller's transaction (the broker's budget reservation, the worker's
  job completion) so a fee and the work it pays for are stored together or not at all. The
  grant row is locked first, so concurrent charges on PostgreSQL cannot pass the ceiling
  together (SQLite transactions are already serialised).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.actors import SYSTEM, Actor
from sandbox.audit import AuditLog
from sandbox.catalog import Catalog
from sandbox.db import Base, Database, UTCDateTime
from sandbox.errors import InvalidInput, PolicyInvalid
from sandbox.grants import Grant
from sandbox.grants import get as get_grant

MINOR_UNITS = 100  # fen per yuan
RATE_KEYS = ("per_query", "per_epsilon", "per_compute_second", "ceiling")
KINDS = ("query", "compute")


class Fee(Base):
    __tablename__ = "fees"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    grant_id: Mapped[str] = mapped_column(String(40), ForeignKey("grants.id"), index=True)
    analyst: Mapped[str] = mapped_column(String(100))
    user_type: Mapped[str] = mapped_column(String(20))
    dataset: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    query_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(10))  # query | compute
    quantity: Mapped[float] = mapped_column(Float)  # epsilon of the query, or compute seconds
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units (fen)
    currency: Mapped[str] = mapped_column(String(3))
    basis: Mapped[str] = mapped_column(Text)
    capped: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "time": self.time.isoformat(), "grant_id": self.grant_id, "analyst": self.analyst,
            "user_type": self.user_type, "dataset": self.dataset, "job_id": self.job_id,
            "query": self.query_digest, "kind": self.kind, "quantity": self.quantity,
            "amount": money(self.amount), "amount_minor": self.amount, "currency": self.currency,
            "basis": self.basis, "capped": self.capped,
        }


def money(minor: int) -> str:
    """Minor units as a decimal string: 12345 -> '123.45'."""
    return str((Decimal(minor) / MINOR_UNITS).quantize(Decimal("0.01")))


def _minor(amount: Decimal) -> int:
    return int((amount * MINOR_UNITS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _dec(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PolicyInvalid(f"price {where} must be a number", "write it as e.g. 2.0")
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise PolicyInvalid(f"price {where} must be a number", "write it as e.g. 2.0") from None
    if not out.is_finite() or out < 0:
        raise PolicyInvalid(f"price {where} must be a finite number, zero or more", "fix the policy's prices")
    return out


def price_list(dataset: str, prices: dict[str, Any] | None) -> dict[str, Any]:
    """A policy's ``prices`` checked and normalised (``PolicyInvalid`` naming what is wrong).

    Public welfare is always free; only ``free`` is accepted for it. Missing commercial rates
    are 0; a missing ceiling means none.
    """
    prices = dict(prices or {})
    unknown = set(prices) - {"currency", "public_welfare", "commercial"}
    if unknown:
        raise PolicyInvalid(f"prices of {dataset}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                            "use currency, public_welfare and commercial")
    currency = prices.get("currency", "CNY")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise PolicyInvalid(f"prices of {dataset}: currency must be a three-letter code", "e.g. CNY")
    welfare = prices.get("public_welfare", "free")
    if welfare != "free":
        raise PolicyInvalid(f"prices of {dataset}: public-welfare use must be free",
                            "write public_welfare: free (the rules do not allow charging it)")
    commercial = prices.get("commercial") or {}
    if not isinstance(commercial, dict):
        raise PolicyInvalid(f"prices of {dataset}: commercial must be a mapping of rates",
                            "e.g. {per_query: 2.0, per_epsilon: 800.0, per_compute_second: 0.02, ceiling: 50000}")
    unknown = set(commercial) - set(RATE_KEYS)
    if unknown:
        raise PolicyInvalid(f"prices of {dataset}: unknown commercial rate(s) {', '.join(sorted(map(str, unknown)))}",
                            f"use: {', '.join(RATE_KEYS)}")
    rates = {k: _dec(commercial.get(k, 0), f"commercial.{k} of {dataset}") for k in RATE_KEYS[:3]}
    ceiling = commercial.get("ceiling")
    return {
        "dataset": dataset, "currency": currency.upper(), "public_welfare": "free",
        "commercial": {**{k: str(v) for k, v in rates.items()},
                       "ceiling": str(_dec(ceiling, f"commercial.ceiling of {dataset}")) if ceiling is not None else None},
    }


class Pricing:
    def __init__(self, db: Database, audit: AuditLog, catalog: Catalog) -> None:
        self.db = db
        self.audit = audit
        self.catalog = catalog

    # -- prices ----------------------------------------------------------------------------

    def prices(self, dataset: str, session: Session | None = None) -> dict[str, Any]:
        policy = self.catalog.policy(dataset, session)
        return price_list(dataset, policy.extra.get("prices"))

    # -- charging (inside the caller's transaction) ------------------------------------------

    def charge_query(self, session: Session, grant: Grant | str, dataset: str, epsilon: float, *,
                     query_digest: str | None = None, job_id: str | None = None,
                     actor: Actor = SYSTEM) -> dict:
        """Fee for one fresh answer on ``dataset`` that spent ``epsilon`` (cached answers are free)."""
        return self.charge(session, grant, kind="query", dataset=dataset, quantity=epsilon,
                           query_digest=query_digest, job_id=job_id, actor=actor)

    def charge_compute(self, session: Session, grant: Grant | str, seconds: float, *,
                       job_id: str | None = None, actor: Actor = SYSTEM) -> dict:
        """Fee for ``seconds`` of a job's compute time on ``grant``."""
        return self.charge(session, grant, kind="compute", dataset=None, quantity=seconds,
                           job_id=job_id, actor=actor)

    def charge(self, session: Session, grant: Grant | str, *, kind: str, dataset: str | None, quantity: float,
               query_digest: str | None = None, job_id: str | None = None, actor: Actor = SYSTEM) -> dict:
        if kind not in KINDS:
            raise InvalidInput(f"unknown fee kind {kind!r}", f"use one of: {', '.join(KINDS)}")
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)) or not math.isfinite(quantity) \
                or quantity < 0:
            raise InvalidInput(f"a {kind} fee needs a quantity of zero or more", "pass the epsilon or seconds used")
        grant_id = grant if isinstance(grant, str) else grant.id
        # lock the grant row: charges on one grant are serialised (the ceiling is per grant)
        row = session.scalar(select(Grant).where(Grant.id == grant_id).with_for_update())
        if row is None:
            row = get_grant(session, grant_id)  # NotFound
        if kind == "query":
            if dataset is None or dataset not in row.columns:
                raise InvalidInput(f"grant {grant_id} does not cover dataset {dataset}",
                                   "charge the dataset the query was asked of")
            priced = [dataset]
        else:
            priced = row.datasets
        lists = [self.prices(name, session) for name in priced]
        currency = lists[0]["currency"] if lists else "CNY"
        qty = Decimal(str(quantity))
        capped = False
        if row.user_type != "commercial":
            amount, basis = 0, "free: public-welfare use"
        else:
            if kind == "query":
                rates = lists[0]["commercial"]
                per_q, per_e = Decimal(rates["per_query"]), Decimal(rates["per_epsilon"])
                amount = _minor(per_q + per_e * qty)
                basis = f"{per_q} per query + {per_e} per epsilon x {qty} ({dataset})"
            else:
                per_s = max((Decimal(p["commercial"]["per_compute_second"]) for p in lists), default=Decimal(0))
                amount = _minor(per_s * qty)
                basis = f"{per_s} per compute second x {qty}"
            ceilings = [Decimal(p["commercial"]["ceiling"]) for p in self._grant_prices(session, row)
                        if p["commercial"]["ceiling"] is not None]
            if ceilings:
                ceiling = _minor(min(ceilings))
                spent = session.scalar(select(func.coalesce(func.sum(Fee.amount), 0)).where(Fee.grant_id == grant_id))
                room = max(ceiling - int(spent), 0)
                if amount > room:
                    capped = True
                    basis += f"; cut to {money(room)} by the grant's ceiling of {money(ceiling)} {currency}"
                    amount = room
        fee = Fee(time=datetime.now(timezone.utc), grant_id=grant_id, analyst=row.analyst, user_type=row.user_type,
                  dataset=dataset, job_id=job_id, query_digest=query_digest, kind=kind, quantity=float(quantity),
                  amount=amount, currency=currency, basis=basis, capped=capped)
        session.add(fee)
        session.flush()
        if amount > 0 or capped:
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="fee.charged",
                objects={"grant": grant_id, "dataset": dataset, "job": job_id, "query": query_digest, "fee": fee.id},
                grant_id=grant_id,
                details={"kind": kind, "quantity": float(quantity), "amount": money(amount), "currency": currency,
                         "basis": basis, "capped": capped},
            )
        return fee.to_dict()

    def _grant_prices(self, session: Session, grant: Grant) -> list[dict[str, Any]]:
        return [self.prices(name, session) for name in grant.datasets]

    # -- reading ---------------------------------------------------------------------------

    def fees(self, grant_id: str | None = None) -> list[dict]:
        with self.db.transaction() as session:
            query = select(Fee).order_by(Fee.id)
            if grant_id is not None:
                query = query.where(Fee.grant_id == grant_id)
            return [f.to_dict() for f in session.scalars(query)]

    def total(self, grant_id: str) -> dict[str, Any]:
        """What a grant has been charged, and its ceiling."""
        with self.db.transaction() as session:
            grant = get_grant(session, grant_id)
            spent = int(session.scalar(select(func.coalesce(func.sum(Fee.amount), 0))
                                       .where(Fee.grant_id == grant_id)))
            lists = self._grant_prices(session, grant)
        ceilings = [Decimal(p["commercial"]["ceiling"]) for p in lists if p["commercial"]["ceiling"] is not None]
        ceiling = _minor(min(ceilings)) if ceilings and grant.user_type == "commercial" else None
        return {
            "grant_id": grant_id, "user_type": grant.user_type,
            "currency": lists[0]["currency"] if lists else "CNY",
            "charged": money(spent), "ceiling": money(ceiling) if ceiling is not None else None,
            "left_under_ceiling": money(ceiling - spent) if ceiling is not None else None,
        }
