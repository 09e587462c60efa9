"""Fixtures for the data domain: a real SQLite database, vault and audit log in tmp_path."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.actors import Actor
from sandbox.audit import AuditLog
from sandbox.catalog import Catalog
from sandbox.db import Database
from sandbox.demo_data import write_demo_csvs
from sandbox.vault import Vault

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
FARM = POLICIES / "farm-credit.yaml"
HEALTH = POLICIES / "health-research.yaml"
CANARY = "CANARY-7f3a9c1e5b2d"
PROVIDER = Actor("agri-bureau", "provider")


@dataclass
class Env:
    root: Path
    db: Database
    vault: Vault
    audit: AuditLog
    catalog: Catalog

    def vault_files(self) -> list[Path]:
        return sorted(p for p in self.vault.root.rglob("*") if p.is_file())

    def audit_actions(self) -> list[str]:
        from sqlalchemy import select

        from sandbox.audit.models import AuditEntry

        with self.db.transaction() as s:
            return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


@pytest.fixture
def env(tmp_path: Path):
    root = tmp_path / "home"
    (root / "keys").mkdir(parents=True)
    Vault.create_master_key(root / "keys" / "master.key")
    AuditLog.create_signing_key(root / "keys" / "audit-signing.key", root / "keys" / "audit-signing.pub")
    db = Database(f"sqlite:///{root / 'sandbox.db'}")
    db.create_all()
    vault = Vault(root / "vault", root / "keys" / "master.key")
    audit = AuditLog(db, root / "keys" / "audit-signing.key", root / "audit" / "checkpoints.jsonl")
    yield Env(root, db, vault, audit, Catalog(db, vault, audit))
    db.engine.dispose()


@pytest.fixture(scope="session")
def demo_csvs(tmp_path_factory) -> dict[str, Path]:
    """Small demo files (real generator, fewer rows) with the canary planted."""
    return write_demo_csvs(tmp_path_factory.mktemp("demo"), n_farmers=3000, n_patients=2000, canary=CANARY)
