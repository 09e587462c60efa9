"""The data domain as a whole: one initialised home (real SQLite file, vault, audit log, OpenDP).

``world`` is made once per session: ``Services.init`` on a fresh home, the three farm-credit
datasets registered from small synthetic CSVs carrying a canary (a farmer's name). Tests make
their own grants on it, so they do not see each other's spending. ``seen`` collects every
answer, error and CLI output of the suite; the last test asserts the canary is in none of them,
nor anywhere in the database or the logs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from sandbox import ledger
from sandbox.actors import Actor
from sandbox.audit.models import AuditEntry
from sandbox.demo_data import write_demo_csvs
from sandbox.home import Home
from sandbox.services import Services

REPO = Path(__file__).resolve().parents[2]
FARM = REPO / "policies" / "farm-credit.yaml"
CANARY = "CANARY-c0ntr0l-93e1f7"
OPERATOR = Actor("olga", "operator")
PROVIDER = Actor("agri-bureau", "provider")
ANALYST = Actor("alice", "analyst")
DATASETS = ("farmers", "loan_defaults", "utility_payments")
SANDBOX = str(Path(sys.executable).with_name("sandbox"))

#: Every answer, error message and CLI output the suite has produced (checked for the canary).
SEEN: list[str] = []


def seen(value: Any) -> Any:
    """Remember ``value`` (an answer, an error, an output) for the final canary check; return it."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    SEEN.append(text)
    assert CANARY not in text
    return value


def seen_error(err: BaseException) -> BaseException:
    seen(str(err))
    seen(getattr(err, "hint", ""))
    return err


@dataclass
class World:
    root: Path
    home: Home
    services: Services
    csvs: dict[str, Path]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def broker(self):  # type: ignore[no-untyped-def]
        return self.services.broker

    def grant(self, epsilon: float | None = 2.0, datasets: tuple[str, ...] = ("farmers",), **kw: Any) -> str:
        made = self.services.grants.create(
            OPERATOR, analyst=ANALYST.name, datasets=list(datasets), epsilon=epsilon,
            days=kw.pop("days", 30), purpose=kw.pop("purpose", "credit scoring research"), **kw,
        )
        return made["id"]

    def spent_units(self, grant_id: str, dataset: str = "farmers") -> int:
        with self.services.db.transaction() as s:
            row = s.get(ledger.Budget, (grant_id, dataset))
            s.refresh(row)
            return row.epsilon_spent

    def charges(self, grant_id: str) -> list[ledger.Charge]:
        with self.services.db.transaction() as s:
            return list(s.scalars(select(ledger.Charge).where(ledger.Charge.grant_id == grant_id)))

    def entries(self, grant_id: str | None = None, action: str | None = None) -> list[AuditEntry]:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        if grant_id is not None:
            stmt = stmt.where(AuditEntry.grant_id == grant_id)
        if action is not None:
            stmt = stmt.where(AuditEntry.action == action)
        with self.services.db.transaction() as s:
            return list(s.scalars(stmt))

    def cli(self, *args: str, actor: Actor = OPERATOR) -> Any:
        """The real click command in-process (CliRunner); output recorded for the canary check."""
        from sandbox.cli import main

        result = CliRunner().invoke(
            main, ["--home", str(self.root), "--user", actor.name, "--role", actor.role, *args],
            catch_exceptions=True,
        )
        seen(result.output)
        seen(getattr(result, "stderr", "") or "")
        return result


@pytest.fixture(scope="session")
def demo_csvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo_csvs(tmp_path_factory.mktemp("demo"), n_farmers=5000, n_patients=200, canary=CANARY)


#: Run the in-process tests on another database, e.g. PostgreSQL (its tables are dropped first!).
TEST_DATABASE_URL = os.environ.get("SANDBOX_TEST_DATABASE_URL")


@pytest.fixture(scope="session", autouse=True)
def _database_choice() -> None:
    """The home's SQLite file, whatever the developer's shell says, unless SANDBOX_TEST_DATABASE_URL is set."""
    saved = os.environ.pop("SANDBOX_DATABASE_URL", None)
    if TEST_DATABASE_URL:
        from sandbox.db import Base, Database

        db = Database(TEST_DATABASE_URL)
        db.create_all()
        Base.metadata.drop_all(db.engine)
        db.engine.dispose()
        os.environ["SANDBOX_DATABASE_URL"] = TEST_DATABASE_URL
    yield
    os.environ.pop("SANDBOX_DATABASE_URL", None)
    if saved is not None:
        os.environ["SANDBOX_DATABASE_URL"] = saved


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, demo_csvs: dict[str, Path]) -> World:
    root = tmp_path_factory.mktemp("world") / "home"
    home = Home(root)
    Services.init(home, OPERATOR).close()
    services = Services.open(home, OPERATOR)
    for name in DATASETS:
        services.catalog.add(demo_csvs[name], name, FARM, PROVIDER)
    yield World(root, home, services, demo_csvs)
    services.close()


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The installed ``sandbox`` entry point in a subprocess, as a user would run it."""
    proc = subprocess.run([SANDBOX, *args], env=env, capture_output=True, text=True, timeout=120)
    seen(proc.stdout)
    seen(proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_env(home: Path, user: str = "olga", role: str = "operator") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(SANDBOX_HOME=str(home), SANDBOX_USER=user, SANDBOX_ROLE=role)
    return env


def assert_clean_error(text: str) -> None:
    """What every error a user meets looks like: no traceback, `error:` first, a `what to do:` line."""
    assert "Traceback" not in text
    assert text.lstrip().startswith("error:"), text
    assert "what to do:" in text, text
    seen(text)
