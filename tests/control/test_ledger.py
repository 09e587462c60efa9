"""The ledger never overspends, exactly, under real concurrency on a real SQLite file."""
from __future__ import annotations

import multiprocessing
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sandbox import grants, ledger
from sandbox.db import Database
from sandbox.errors import BudgetExceeded, GrantInactive, PolicyRefused


def _db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    db.create_all()
    return db


def _grant(db: Database, epsilon: float = 1.0, days: int = 30) -> str:
    with db.transaction() as s:
        g = grants.create(
            s, analyst="alice", purpose="credit scoring", days=days, created_by="op",
            budgets=[grants.DatasetBudget("farmers", epsilon, 1e-6)],
        )
        return g.id


def _spend(url: str, grant_id: str, epsilon: float, n: int, results: list) -> None:
    db = Database(url)
    for i in range(n):
        try:
            with db.transaction() as s:
                ledger.reserve(s, grant_id, "farmers", epsilon, 0.0, f"q{i}")
            results.append("ok")
        except BudgetExceeded:
            results.append("refused")


def test_fifty_threads_never_overspend(tmp_path: Path) -> None:
    db = _db(tmp_path)
    gid = _grant(db, epsilon=1.0)
    results: list[str] = []
    threads = [threading.Thread(target=_spend, args=(db.url, gid, 0.03, 1, results)) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 33  # 33 * 0.03 = 0.99; the 34th would make 1.02
    assert results.count("refused") == 17
    with db.transaction() as s:
        view = ledger.budget(s, gid, "farmers")
        charges = s.query(ledger.Charge).filter_by(grant_id=gid).count()
    assert view.epsilon_spent == pytest.approx(0.99)
    assert view.epsilon_spent <= view.epsilon_total
    assert charges == 33


def _proc(url: str, grant_id: str, queue: multiprocessing.Queue) -> None:
    results: list[str] = []
    _spend(url, grant_id, 0.1, 5, results)
    queue.put(results)


def test_processes_never_overspend(tmp_path: Path) -> None:
    db = _db(tmp_path)
    gid = _grant(db, epsilon=1.0)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_proc, args=(db.url, gid, queue)) for _ in range(10)]
    for p in procs:
        p.start()
    results = [r for _ in procs for r in queue.get(timeout=120)]
    for p in procs:
        p.join()
    assert results.count("ok") == 10  # exactly 1.0 in steps of 0.1, no float drift
    with db.transaction() as s:
        assert ledger.budget(s, gid, "farmers").epsilon_left == 0


def test_exact_budget_is_spendable_and_no_more(tmp_path: Path) -> None:
    db = _db(tmp_path)
    gid = _grant(db, epsilon=0.3)
    with db.transaction() as s:
        for i in range(3):
            ledger.reserve(s, gid, "farmers", 0.1, 0.0, f"q{i}")
    with pytest.raises(BudgetExceeded) as err, db.transaction() as s:
        ledger.reserve(s, gid, "farmers", 0.1, 0.0, "q4")
    assert "left on farmers" in err.value.message and err.value.hint


def test_refused_reservation_leaves_nothing(tmp_path: Path) -> None:
    db = _db(tmp_path)
    gid = _grant(db, epsilon=0.1)
    with pytest.raises(BudgetExceeded), db.transaction() as s:
        ledger.reserve(s, gid, "farmers", 0.5, 0.0, "big")
    with db.transaction() as s:
        assert s.query(ledger.Charge).count() == 0
        assert ledger.budget(s, gid, "farmers").epsilon_spent == 0


def test_expired_and_revoked_grants_are_refused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    gid = _grant(db)
    with db.transaction() as s:
        grants.revoke(s, gid, "op", "purpose ended")
    with pytest.raises(GrantInactive, match="revoked.*purpose ended"), db.transaction() as s:
        grants.active(s, gid)
    gid2 = _grant(db)
    with db.transaction() as s:
        s.get(grants.Grant, gid2).expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    with pytest.raises(GrantInactive, match="expired"), db.transaction() as s:
        grants.active(s, gid2)


def test_grant_does_not_cover_other_datasets(tmp_path: Path) -> None:
    db = _db(tmp_path)
    gid = _grant(db)
    with pytest.raises(PolicyRefused, match="does not cover dataset loans"), db.transaction() as s:
        grants.active(s, gid, "loans")
