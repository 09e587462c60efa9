"""Database access: SQLAlchemy over SQLite (one file, WAL) by default, any URL otherwise.

Each part of the control plane declares its own tables on ``Base`` in its own module;
``create_all`` imports them so one call makes the whole schema.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from typing import Iterator

from datetime import datetime, timezone

from sqlalchemy import DateTime, Engine, TypeDecorator, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

#: Modules that declare tables; each appends itself here when it is written.
TABLE_MODULES = [
    "sandbox.audit.models",
    "sandbox.broker.answers",
    "sandbox.catalog",
    "sandbox.grants",
    "sandbox.jobs.models",
    "sandbox.ledger",
    "sandbox.users",
    "sandbox.applications",
    "sandbox.pricing",
]


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator):
    """A moment in UTC, handed back timezone-aware by every database.

    SQLite stores datetimes without their zone and returns them naive; converting here, once,
    spares every model and caller from guessing.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("store aware datetimes only (datetime.now(timezone.utc))")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def make_engine(url: str, immediate: bool = True) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout and (unless ``immediate`` is False)
    immediate transactions.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock at the start of every transaction,
    so read-then-write sequences (budget reservation, audit appends) cannot interleave.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_all(engine: Engine) -> None:
    for name in TABLE_MODULES:
        importlib.import_module(name)
    Base.metadata.create_all(engine)


class Database:
    """An engine plus a session factory; ``transaction()`` is the unit of atomic work,
    ``read()`` a read of committed state that never waits for a writer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        on_file = url.startswith("sqlite") and ":memory:" not in url
        self._reader = make_engine(url, immediate=False) if on_file else self.engine
        self._reads = sessionmaker(self._reader, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session; on SQLite it does not take the write lock, so a read made
        while the same thread holds an open write transaction does not wait for it."""
        with self._reads() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
        if self._reader is not self.engine:
            self._reader.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Commit on success, roll back on any error: nothing is stored half-way."""
        with self.sessions.begin() as session:
            yield session

    def create_all(self) -> None:
        create_all(self.engine)
