"""One place that opens a sandbox home and wires its parts together.

The CLI, the worker and (later) the web application all start from ``Services.open``, so
every entry point sees the same database, vault, audit log and broker.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import make_url

from sandbox.actors import Actor
from sandbox.applications import Applications
from sandbox.audit import AuditLog
from sandbox.catalog import Catalog
from sandbox.db import Database
from sandbox.disclosure import Disclosure
from sandbox.errors import AlreadyExists
from sandbox.grants import Grants
from sandbox.jobs.service import Jobs
from sandbox.pricing import Pricing
from sandbox.runtime_policy import load_runtime_policy
from sandbox.home import Home, default_home
from sandbox.users import Users
from sandbox.vault import Vault


class Services:
    def __init__(self, home: Home, actor: Actor) -> None:
        self.home = home
        self.actor = actor
        self.db = Database(home.database_url)
        self.audit = AuditLog(self.db, home.signing_key, home.checkpoints)
        self.vault = Vault(home.vault, home.master_key)
        self.catalog = Catalog(self.db, self.vault, self.audit)
        self.grants = Grants(self.db, self.audit, self.catalog)
        self.users = Users(self.db, self.audit)
        # a calendar.yaml in the home overrides the shipped policies/calendar.yaml
        calendar = home.root / "calendar.yaml"
        self.applications = Applications(self.db, self.audit, self.catalog, self.grants,
                                         calendar if calendar.exists() else None)
        self.pricing = Pricing(self.db, self.audit, self.catalog)
        self.runtime = load_runtime_policy(home.root)
        self.jobs = Jobs(self.db, self.audit, self.catalog, self.pricing, self.runtime)
        self.disclosure = Disclosure(self.db, self.catalog, self.pricing)

    @cached_property
    def broker(self):  # type: ignore[no-untyped-def]
        """Built on first use: importing OpenDP is slow and most commands never need it."""
        from sandbox.broker.service import Broker

        return Broker(self.db, self.catalog, self.audit, self.pricing)

    @classmethod
    def open(cls, home: Home, actor: Actor) -> "Services":
        return cls(home.require(), actor)

    @classmethod
    def init(cls, home: Home, actor: Actor) -> "Services":
        """Make a new home: folders (0700), master key, signing key (0600), database."""
        if home.master_key.exists():
            raise AlreadyExists(
                f"a sandbox home already exists at {home.root}",
                "use it as it is, or choose another folder with --home",
            )
        for folder in (home.root, home.keys, home.vault, home.checkpoints.parent, home.jobs):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        Vault.create_master_key(home.master_key)
        AuditLog.create_signing_key(home.signing_key, home.verify_key)
        database = _sqlite_file(home.database_url)
        if database is not None and not database.exists():
            os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))  # SQLite keeps the mode it finds
        services = cls(home, actor)
        services.db.create_all()
        services.audit.append(
            actor=actor.name, role=actor.role, action="sandbox.initialised",
            details={"database": _redacted(home.database_url), "verify_key": str(home.verify_key)},
        )
        services.audit.checkpoint()
        if database is not None:  # the file and its -wal / -shm companions, readable by the owner only
            for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
                if path.exists():
                    os.chmod(path, 0o600)
        return services

    def close(self) -> None:
        """End of a command: sign a checkpoint over whatever this command appended."""
        self.audit.checkpoint()
        self.db.close()


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _redacted(url: str) -> str:
    """A database URL without its password, fit for the audit log."""
    return make_url(url).render_as_string(hide_password=True)


def home_from(option: str | Path | None) -> Home:
    return Home(Path(option).expanduser() if option else default_home())
