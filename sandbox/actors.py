"""Who is acting: every audit entry and every refusal names an actor and a role."""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("operator", "provider", "analyst", "reviewer", "public", "system")


@dataclass(frozen=True)
class Actor:
    name: str
    role: str
    organisation: str | None = None


SYSTEM = Actor("sandbox", "system")
