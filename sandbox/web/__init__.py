"""The JSON API: ``create_app(config)`` builds the Flask (APIFlask) application.

One ``Services`` is opened per application and shared by every request (each call runs its
own database transaction). Routes live under ``/api/v1``; ``/`` and other paths are left
for the server-rendered pages. The OpenAPI spec, generated from the same marshmallow
schemas that validate requests, is served at ``/openapi.json`` (docs at ``/api/docs``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from flask import Response, g, request
from flask_limiter import Limiter

from sandbox.actors import SYSTEM
from sandbox.home import Home, default_home
from sandbox.services import Services
from sandbox.web import config as server_config
from sandbox.web import errors
from sandbox.web.auth import rate_key
from sandbox.web.errors import ApiError

log = logging.getLogger("sandbox.web")

API = "/api/v1"
VERSION = "1.0.0"
#: Endpoints whose body is multipart/form-data (everything else under /api takes JSON).
MULTIPART_ENDPOINTS = {"catalog.register_dataset"}


@dataclass(frozen=True)
class ServerHome(Home):
    """A home whose database URL may come from the server config instead of the environment."""

    url: str | None = None

    @property
    def database_url(self) -> str:
        return self.url or super().database_url


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates and NUL characters anywhere in a JSON body (keys included)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                raise ApiError(400, "invalid_unicode", "the request holds a NUL character or a lone surrogate",
                               "send text as valid UTF-8 without NUL characters")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def create_app(config: dict | None = None) -> APIFlask:
    settings = server_config.load(config)
    home_root = Path(settings["HOME"]).expanduser() if settings["HOME"] else default_home()
    home = ServerHome(home_root, settings["DATABASE_URL"])

    app = APIFlask(__name__, title="Data sandbox API", version=VERSION, spec_path="/openapi.json",
                   docs_path="/api/docs")
    app.config.update(
        SANDBOX=settings,
        MAX_CONTENT_LENGTH=settings["MAX_BODY_BYTES"],
        HTTP_ERROR_SCHEMA=errors.ERROR_SCHEMA,
        VALIDATION_ERROR_SCHEMA=errors.ERROR_SCHEMA,
        VALIDATION_ERROR_STATUS_CODE=422,
        SECURITY_SCHEMES={"BearerAuth": {"type": "http", "scheme": "bearer",
                                         "description": "an API token: sbx_<id>_<secret>"}},
        INFO={"description": "Usable but not visible: the sandbox's JSON API. See docs/api.md."},
        AUTO_404_RESPONSE=False,
        AUTO_VALIDATION_ERROR_RESPONSE=False,
        AUTO_AUTH_ERROR_RESPONSE=False,
        AUTO_SERVERS=False,
        SPEC_FORMAT="json",
        JSON_SORT_KEYS=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for key in ("TESTING",):
        if key in (config or {}):
            app.config[key] = config[key]  # type: ignore[index]

    services = Services.open(home, SYSTEM)
    app.extensions["sandbox.services"] = services

    limit = settings["RATE_LIMIT"]
    limiter = Limiter(rate_key, app=app, default_limits=[limit] if limit else [], storage_uri="memory://",
                      headers_enabled=True, enabled=bool(limit))
    limiter.exempt(app.view_functions["openapi.spec"])
    app.extensions["sandbox.limiter"] = limiter

    errors.register(app)

    @app.before_request
    def _check_body() -> None:
        if not request.path.startswith(API + "/") or request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return
        if request.endpoint in MULTIPART_ENDPOINTS:
            if request.mimetype != "multipart/form-data":
                raise ApiError(415, "unsupported_media_type", "a dataset is uploaded as multipart/form-data",
                               "send the fields data (the file), policy (the YAML) and name")
            return
        length = request.content_length
        if length is not None and length > settings["MAX_JSON_BYTES"]:
            raise ApiError(413, "too_large", f"a JSON body is limited to {settings['MAX_JSON_BYTES']} bytes",
                           "send less; scripts are limited to 256 KiB")
        raw = request.get_data(cache=True)
        if len(raw) > settings["MAX_JSON_BYTES"]:
            raise ApiError(413, "too_large", f"a JSON body is limited to {settings['MAX_JSON_BYTES']} bytes",
                           "send less; scripts are limited to 256 KiB")
        if not raw:
            return
        if not request.is_json:
            raise ApiError(415, "unsupported_media_type", "this request takes a JSON body",
                           "send it with 'Content-Type: application/json'")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "malformed_json", "the request body is not valid JSON (UTF-8)",
                           "send one JSON object with 'Content-Type: application/json'") from None
        _check_strings(doc)

    @app.after_request
    def _sign(resp: Response) -> Response:
        """Like the CLI after each command: sign a checkpoint over what this request appended."""
        if request.method not in ("GET", "HEAD", "OPTIONS") or resp.status_code >= 400 or g.get("audited"):
            try:
                services.audit.checkpoint()
            except Exception:  # the entries are committed; the next checkpoint covers them
                log.exception("audit checkpoint failed after %s %s", request.method, request.path)
        return resp

    from sandbox.web.api import register_blueprints

    register_blueprints(app, API)
    from sandbox.web.pages import init_pages

    init_pages(app)  # the server-rendered pages (docs/web.md)
    for blueprint in app.blueprints.values():  # plain Flask blueprints: pages, not in the API spec
        if not hasattr(blueprint, "enable_openapi"):
            blueprint.enable_openapi = False  # type: ignore[attr-defined]
    return app
