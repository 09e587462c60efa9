"""One blueprint per area of the API, all under ``/api/v1``."""
from __future__ import annotations

import importlib

from apiflask import APIFlask

BLUEPRINTS = ("catalog", "applications", "grants", "jobs", "budget", "audit", "disclosure", "users")


def register_blueprints(app: APIFlask, prefix: str) -> None:
    for name in BLUEPRINTS:
        module = importlib.import_module(f"sandbox.web.api.{name}")
        app.register_blueprint(module.bp, url_prefix=prefix)
