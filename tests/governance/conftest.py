"""Governance: a real initialised home (SQLite file, vault, audit log) with three tiny datasets.

``open_stats`` is unconditional-open, ``credit`` conditional-open and ``closed`` not open; all
three share one policy file written here, with the prices of ``policies/farm-credit.yaml``.
Time is injected: ``gov.clock`` is a settable clock used by users and applications.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from sandbox.actors import Actor
from sandbox.applications import Applications
from sandbox.audit.models import AuditEntry
from sandbox.home import Home
from sandbox.services import Services
from sandbox.users import Users

REPO = Path(__file__).resolve().parents[2]
OPERATOR = Actor("op", "operator")
PROVIDER = Actor("bureau", "provider", "Agriculture Bureau")
ANALYST = Actor("ana", "analyst", "Rural Bank")
OTHER = Actor("bob", "analyst", "Other Bank")
REVIEWER = Actor("rev", "reviewer", "Regulator")

POLICY = """
defaults:
  provider: Test Bureau
  topic: testing
  grade: general-2
  allowed_operations: [count, sum, mean]
  max_epsilon_per_query: 1.0
  default_epsilon_budget: 4.0
  delta: 1e-7
  min_release_count: 5
  privacy_unit: {column: pid, max_rows: 1}
  prices:
    currency: CNY
    public_welfare: free
    commercial: {per_query: 2.0, per_epsilon: 800.0, per_compute_second: 0.02, ceiling: 50000}
datasets:
  open_stats:
    title: Open statistics
    openness: unconditional
    columns:
      - {name: pid, type: string, tag: identifier}
      - {name: size, type: integer, tag: public, bounds: [1, 12]}
  credit:
    title: Credit records
    openness: conditional
    prices:
      commercial: {per_epsilon: 1500.0}
    columns:
      - {name: pid, type: string, tag: identifier}
      - {name: size, type: integer, tag: public, bounds: [1, 12]}
  closed:
    title: Closed records
    openness: not_open
    columns:
      - {name: pid, type: string, tag: identifier}
      - {name: size, type: integer, tag: public, bounds: [1, 12]}
"""


class Clock:
    """A settable UTC clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def beijing(y: int, m: int, d: int, h: int = 10) -> datetime:
    """A moment given in Beijing time (UTC+8), as an aware UTC datetime."""
    return datetime(y, m, d, h, tzinfo=timezone(timedelta(hours=8))).astimezone(timezone.utc)


@dataclass
class Gov:
    root: Path
    services: Services
    clock: Clock
    users: Users
    applications: Applications
    policy: Path
    data: Path
    marks: dict = field(default_factory=dict)

    def actions(self, since: int = 0) -> list[str]:
        with self.services.db.transaction() as s:
            return list(s.scalars(select(AuditEntry.action).where(AuditEntry.seq >= since).order_by(AuditEntry.seq)))

    def entries(self, action: str) -> list[AuditEntry]:
        with self.services.db.transaction() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))

    def seq(self) -> int:
        with self.services.db.transaction() as s:
            return len(list(s.scalars(select(AuditEntry.seq))))


@pytest.fixture
def gov(tmp_path: Path):
    home = Home(tmp_path / "home")
    services = Services.init(home, OPERATOR)
    policy = tmp_path / "test-policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    data = tmp_path / "rows.csv"
    data.write_text("pid,size\n" + "".join(f"p{i},{i % 12 + 1}\n" for i in range(60)), encoding="utf-8")
    for name in ("open_stats", "credit", "closed"):
        services.catalog.add(data, name, policy, PROVIDER)
    clock = Clock(beijing(2026, 3, 2))  # a Monday
    users = Users(services.db, services.audit, clock=clock)
    apps = Applications(services.db, services.audit, services.catalog, services.grants,
                        REPO / "policies" / "calendar.yaml", clock=clock)
    for actor in (PROVIDER, ANALYST, OTHER, REVIEWER):
        users.add(OPERATOR, actor.name, actor.role, actor.organisation)
    yield Gov(tmp_path, services, clock, users, apps, policy, data)
    services.close()
