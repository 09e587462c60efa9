"""Server configuration: defaults < config file < environment < the dict given to ``create_app``.

The file is TOML: ``$SANDBOX_SERVER_CONFIG`` if set, else ``<home>/server.toml`` when it
exists. Keys (lower case in the file, upper case in the dict)::

    home = "/srv/sandbox"             # the sandbox home (else $SANDBOX_HOME, else ~/.sandbox)
    database_url = "postgresql://…"   # else $SANDBOX_DATABASE_URL, else the home's SQLite file
    rate_limit = "300 per minute"     # per API token (per address without one); "" disables
    max_body_bytes = 67108864         # largest request body (dataset uploads); JSON bodies: 1 MiB
    max_json_bytes = 1048576
    worker = true                     # `sandbox serve` runs the embedded worker thread
    host = "127.0.0.1"
    port = 8750
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from sandbox.errors import InvalidInput

DEFAULTS: dict[str, Any] = {
    "HOME": None,
    "DATABASE_URL": None,
    "RATE_LIMIT": "300 per minute",
    "MAX_BODY_BYTES": 64 * 1024 * 1024,
    "MAX_JSON_BYTES": 1024 * 1024,
    "WORKER": True,
    "HOST": "127.0.0.1",
    "PORT": 8750,
}

ENV = {
    "HOME": "SANDBOX_HOME",
    "DATABASE_URL": "SANDBOX_DATABASE_URL",
    "RATE_LIMIT": "SANDBOX_RATE_LIMIT",
    "MAX_BODY_BYTES": "SANDBOX_MAX_BODY_BYTES",
    "MAX_JSON_BYTES": "SANDBOX_MAX_JSON_BYTES",
    "WORKER": "SANDBOX_WORKER",
    "HOST": "SANDBOX_HOST",
    "PORT": "SANDBOX_PORT",
}

_INTS = ("MAX_BODY_BYTES", "MAX_JSON_BYTES", "PORT")


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _INTS:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"server setting {key.lower()} must be a whole number", "fix the config") from None
    if key == "WORKER" and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


def load(overrides: dict | None = None) -> dict[str, Any]:
    overrides = {k.upper(): v for k, v in (overrides or {}).items()}
    env = {key: os.environ[var] for key, var in ENV.items() if os.environ.get(var) not in (None, "")}
    home = overrides.get("HOME") or env.get("HOME")
    file = os.environ.get("SANDBOX_SERVER_CONFIG")
    path = Path(file) if file else (Path(home).expanduser() / "server.toml" if home else None)
    from_file: dict[str, Any] = {}
    if path is not None and path.is_file():
        try:
            from_file = {k.upper(): v for k, v in tomllib.loads(path.read_text("utf-8")).items()}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise InvalidInput(f"{path} is not valid TOML: {err}", "fix the server config file") from None
        unknown = sorted(set(from_file) - set(DEFAULTS))
        if unknown:
            raise InvalidInput(f"{path}: unknown setting(s) {', '.join(k.lower() for k in unknown)}",
                               f"known settings: {', '.join(k.lower() for k in DEFAULTS)}")
    merged = {**DEFAULTS, **from_file, **env, **overrides}
    return {k: _coerce(k, v) if k in DEFAULTS else v for k, v in merged.items()}
