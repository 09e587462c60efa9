"""A real SQLite database holding only the audit tables, and a fresh signing key."""
from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.audit import AuditLog
from sandbox.audit.models import AuditCheckpoint, AuditEntry
from sandbox.db import Base, Database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'a.db'}")
    Base.metadata.create_all(database.engine, tables=[AuditEntry.__table__, AuditCheckpoint.__table__])
    yield database
    database.engine.dispose()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    private = tmp_path / "keys" / "audit-signing.key"
    AuditLog.create_signing_key(private, tmp_path / "keys" / "audit-signing.pub")
    return private


@pytest.fixture
def audit(db: Database, key: Path, tmp_path: Path) -> AuditLog:
    return AuditLog(db, key, tmp_path / "audit" / "checkpoints.jsonl", every=4)
