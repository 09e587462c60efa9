"""The public disclosure report (filled in once ``sandbox.disclosure`` lands)."""
from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("disclosure", __name__, tag="disclosure")
