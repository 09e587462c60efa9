"""Access applications (filled in once ``sandbox.applications`` lands)."""
from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("applications", __name__, tag="applications")
