"""The sandbox home: the folder holding the database, keys, vault and checkpoint file.

Chosen by ``--home``, else ``$SANDBOX_HOME``, else ``~/.sandbox``. The database URL can be
overridden with ``$SANDBOX_DATABASE_URL`` (e.g. PostgreSQL for several workers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import NotInitialised


def default_home() -> Path:
    return Path(os.environ.get("SANDBOX_HOME") or Path.home() / ".sandbox").expanduser()


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def database_url(self) -> str:
        return os.environ.get("SANDBOX_DATABASE_URL") or f"sqlite:///{self.root / 'sandbox.db'}"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def master_key(self) -> Path:
        return self.keys / "master.key"

    @property
    def signing_key(self) -> Path:
        return self.keys / "audit-signing.key"

    @property
    def verify_key(self) -> Path:
        return self.keys / "audit-signing.pub"

    @property
    def vault(self) -> Path:
        return self.root / "vault"

    @property
    def checkpoints(self) -> Path:
        """Signed audit checkpoints, also kept outside the database."""
        return self.root / "audit" / "checkpoints.jsonl"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    def require(self) -> "Home":
        if not self.master_key.exists():
            raise NotInitialised(
                f"no sandbox home at {self.root}",
                "run `sandbox init` first, or point --home / $SANDBOX_HOME at an existing home",
            )
        return self
