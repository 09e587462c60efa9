"""Server-rendered pages for every role, in Simplified Chinese and English.

``init_pages(app)`` adds them to the application made by ``sandbox.web.create_app``: the
language machinery (Flask-Babel; .po files compiled to .mo at start when missing or stale),
CSRF protection for every page form (Flask-WTF's token, checked on the pages' blueprint only,
so the bearer-token JSON API is unaffected), the signed-in user from the session, and one
blueprint holding every page. The pages call the ``Services`` layer directly, with the same
role matrix as the API (see docs/web.md).
"""
from __future__ import annotations

import logging
import os
import secrets
import tempfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import wraps
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session, url_for
from babel.lists import format_list
from flask_babel import (Babel, format_currency, format_date, format_decimal, get_locale, gettext as _,
                         lazy_gettext, to_user_timezone)
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from wtforms.validators import ValidationError

from sandbox.actors import Actor
from sandbox.errors import AuthFailed, Forbidden, NotFound, SandboxError
from sandbox.web.errors import status_of

log = logging.getLogger("sandbox.web.pages")

HERE = Path(__file__).resolve().parent
WEB = HERE.parent
TRANSLATIONS = WEB / "translations"
LOCALES = ("zh_CN", "en")
LANG_COOKIE = "sandbox_lang"
ROLES = ("operator", "provider", "analyst", "reviewer")

bp = Blueprint("pages", __name__, template_folder=str(WEB / "templates"),
               static_folder=str(WEB / "static"), static_url_path="/static/pages")


# -- translations -----------------------------------------------------------------------------


def compile_translations(source: Path = TRANSLATIONS) -> Path:
    """Compile every ``<locale>/LC_MESSAGES/messages.po`` to .mo when missing or older.

    A fresh clone has only the .po files (the .mo are git-ignored); this runs at app start,
    so nothing else is needed. When the package folder is read-only the catalogs are compiled
    into a temporary folder instead; returns the folder Babel should read.
    """
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    pos = sorted(source.glob("*/LC_MESSAGES/messages.po"))
    target = source
    if not os.access(source, os.W_OK):
        target = Path(tempfile.mkdtemp(prefix="sandbox-translations-"))
    for po in pos:
        mo = target / po.relative_to(source).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as fh:
            catalog = read_po(fh)
        tmp = mo.with_suffix(".mo.tmp")
        with tmp.open("wb") as fh:
            write_mo(fh, catalog)
        os.replace(tmp, mo)
    return target


def select_locale() -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LOCALES:
        return chosen
    for lang, _q in request.accept_languages:
        lang = lang.lower().replace("_", "-")
        if lang.startswith("zh"):
            return "zh_CN"
        if lang.startswith("en"):
            return "en"
    return "zh_CN" if not request.accept_languages else "en"


# -- who is signed in -------------------------------------------------------------------------


def services():  # type: ignore[no-untyped-def]
    return current_app.extensions["sandbox.services"]


PUBLIC = Actor("anonymous", "public")


def who() -> Actor:
    """The signed-in user (checked on every request: a revoked or expired token signs out)."""
    found = g.get("page_actor")
    if found is not None:
        return found
    found = PUBLIC
    name, token_id = session.get("user"), session.get("token_id")
    if name and token_id:
        try:
            tokens = services().users.tokens(name)
            if any(t["id"] == token_id and t["status"] == "active" for t in tokens):
                user = services().users.get(name)
                found = Actor(user["name"], user["role"], user.get("organisation"))
        except NotFound:
            pass
        if found is PUBLIC:
            session.clear()
    g.page_actor = found
    return found


def roles(*allowed: str) -> Callable:
    """Only these roles may open the page; the public is sent to sign in, others get a 403."""

    def decorator(f: Callable) -> Callable:
        @wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor = who()
            if actor.role in allowed:
                return f(*args, **kwargs)
            if actor.role == "public":
                return redirect(url_for("pages.signin", next=request.full_path.rstrip("?")))
            raise forbidden_page(actor.role, allowed)

        wrapper.page_roles = allowed  # type: ignore[attr-defined]
        return wrapper

    return decorator


def forbidden_page(role: str, allowed: tuple[str, ...]) -> Forbidden:
    """The 403 for a role a page is not for: English in the audit log, the reader's language on the page."""
    article = "an" if role[:1] in "aeiou" else "a"
    err = Forbidden(f"{article} {role} may not open this page (it is for: {', '.join(allowed)})",
                    "sign in as a user with one of those roles")
    err.page_text = (  # type: ignore[attr-defined]
        _("This page is for %(roles)s. You are signed in as %(role)s.",
          roles=format_list([label("role_as", r) for r in allowed], style="or", locale=get_locale()),
          role=label("role_as", role)),
        _("Sign out and sign in with the token of a user who has one of these roles."),
    )
    return err


def hidden(what: str, ident: str) -> NotFound:
    """Another user's object looks exactly like one that does not exist (as in the API); audited."""
    actor = who()
    services().audit.append(
        actor=actor.name, role=actor.role, action="request.refused", outcome="not_owner",
        objects={"method": request.method, "path": request.path[:300]},
        details={"status": 404, "reason": f"{what} {ident} belongs to another user", "via": "pages"},
    )
    return NotFound(f"no {what} {ident}", "")


def require_own(what: str, ident: str, owner: str | None) -> None:
    """An analyst sees only its own applications, grants and jobs; others' are ``hidden``."""
    actor = who()
    if actor.role == "analyst" and owner != actor.name:
        raise hidden(what, ident)


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a path on this site (never //host or a scheme): no open redirects."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


# -- formatting -------------------------------------------------------------------------------


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def zone_label(moment: datetime) -> str:
    """The offset of a local time as "UTC+8" (or "UTC+5:30", "UTC")."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if not minutes:
        return "UTC"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def fmt_datetime(value: Any, seconds: bool = False) -> str:
    """A moment in the pages' time zone, one style everywhere: the date as ``date_only`` writes
    it, 24-hour time and the zone ("Nov 25, 2026 08:36 UTC+8", "2026年11月25日 08:36 UTC+8")."""
    moment = _as_datetime(value)
    if moment is None:
        return "—"
    local = to_user_timezone(moment)
    clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    return f"{format_date(local.date(), 'medium')} {clock} {zone_label(local)}"


def fmt_date(value: Any) -> str:
    """A date (ISO text, date or datetime) in the reader's locale; a moment's date is its date
    in the pages' time zone, as ``dt`` shows it."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str) and len(value) > 10:
        value = _as_datetime(value) or value
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value[:10])
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = to_user_timezone(_as_datetime(value)).date()  # type: ignore[arg-type]
    return format_date(value, "medium")


def fmt_money(value: Any, currency: str | None = None) -> str:
    """An amount with its currency ("CN¥2.00" in English, "¥2.00" in Chinese)."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return format_currency(amount, (currency or "CNY").upper())


def fmt_number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return format_decimal(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    pattern = "#,##0." + "#" * digits if digits else "#,##0"
    return format_decimal(number, format=pattern)


# Labels of the domain's fixed vocabularies, translated (the values themselves stay English
# in the database, the API and the audit log).
LABELS = {
    "openness": {"unconditional": lazy_gettext("unconditionally open"),
                 "conditional": lazy_gettext("conditionally open"),
                 "not_open": lazy_gettext("not open")},
    "tag": {"identifier": lazy_gettext("identifier"), "quasi_identifier": lazy_gettext("quasi-identifier"),
            "sensitive": lazy_gettext("sensitive"), "public": lazy_gettext("public")},
    "state": {"queued": lazy_gettext("queued"), "running": lazy_gettext("running"),
              "succeeded": lazy_gettext("succeeded"), "failed": lazy_gettext("failed"),
              "cancelled": lazy_gettext("cancelled"), "refused": lazy_gettext("refused")},
    "status": {"active": lazy_gettext("active"), "expired": lazy_gettext("expired"),
               "revoked": lazy_gettext("revoked"), "pending": lazy_gettext("pending"),
               "approved": lazy_gettext("approved"), "refused": lazy_gettext("refused"),
               "info_requested": lazy_gettext("information requested"),
               "withdrawn": lazy_gettext("withdrawn"), "released": lazy_gettext("released"),
               "submitted": lazy_gettext("submitted")},
    "kind": {"submitted": lazy_gettext("submitted"), "question": lazy_gettext("question"),
             "reply": lazy_gettext("reply"), "approved": lazy_gettext("approved"),
             "refused": lazy_gettext("refused"), "withdrawn": lazy_gettext("withdrawn"),
             "auto_approved": lazy_gettext("approved automatically")},
    "role": {"operator": lazy_gettext("operator"), "provider": lazy_gettext("data provider"),
             "analyst": lazy_gettext("analyst"), "reviewer": lazy_gettext("reviewer"),
             "public": lazy_gettext("public"), "system": lazy_gettext("system")},
    # The role after "signed in as" / "for" (English needs the article).
    "role_as": {"operator": lazy_gettext("an operator"), "provider": lazy_gettext("a data provider"),
                "analyst": lazy_gettext("an analyst"), "reviewer": lazy_gettext("a reviewer"),
                "public": lazy_gettext("a visitor who is not signed in")},
    "user_type": {"public_welfare": lazy_gettext("public welfare"), "commercial": lazy_gettext("commercial")},
    "grade": {"core": lazy_gettext("core"), "important": lazy_gettext("important"),
              "general": lazy_gettext("general"), "general-1": lazy_gettext("general (level 1)"),
              "general-2": lazy_gettext("general (level 2)"), "general-3": lazy_gettext("general (level 3)"),
              "general-4": lazy_gettext("general (level 4)")},
}


def label(kind: str, value: Any) -> str:
    if value is None:
        return "—"
    text = LABELS.get(kind, {}).get(str(value))
    return str(text) if text is not None else str(value)


# -- errors as pages ----------------------------------------------------------------------------


@bp.errorhandler(SandboxError)
def _sandbox_error(err: SandboxError):  # type: ignore[no-untyped-def]
    status = status_of(err)
    if isinstance(err, AuthFailed):
        session.clear()
        return redirect(url_for("pages.signin"))
    if status in (401, 403):
        actor = who()
        services().audit.append(
            actor=actor.name, role=actor.role, action="request.refused", outcome=err.code,
            objects={"method": request.method, "path": request.path[:300]},
            details={"status": status, "reason": err.message[:500], "via": "pages"},
        )
    message, hint = getattr(err, "page_text", (err.message, err.hint))
    return render_template("pages/error.html", status=status, message=message, hint=hint), status


@bp.errorhandler(CSRFError)
def _csrf_error(err: CSRFError):  # type: ignore[no-untyped-def]
    return render_template("pages/error.html", status=400,
                           message=_("The form could not be accepted: its security token is missing or has expired."),
                           hint=_("Go back, reload the page and send the form again.")), 400


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):  # type: ignore[no-untyped-def]
    status = err.code or 500
    message = {404: _("There is no such page."), 405: _("This page does not accept that method."),
               413: _("What you sent is too large.")}.get(status, err.name)
    return render_template("pages/error.html", status=status, message=message, hint=""), status


@bp.errorhandler(Exception)
def _unexpected(err: Exception):  # type: ignore[no-untyped-def]
    log.exception("page failed: %s %s", request.method, request.path)
    return render_template("pages/error.html", status=500,
                           message=_("Something went wrong on the server; nothing was half-done."),
                           hint=_("Try again; if it persists, tell the operator.")), 500


@bp.before_request
def _check_csrf() -> None:
    """Every page form carries the session's CSRF token; a POST without it is refused."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    token = request.form.get("csrf_token") or request.headers.get("X-CSRFToken")
    try:
        validate_csrf(token)
    except ValidationError as err:
        raise CSRFError(str(err)) from None


# -- installation -----------------------------------------------------------------------------


def _secret_key(app: Flask) -> str:
    """The session-signing key: kept in the home (0600) so sessions survive a restart."""
    svc = app.extensions["sandbox.services"]
    path = svc.home.keys / "web-session.key"
    try:
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip()
    except OSError:  # e.g. a read-only home: sessions last as long as the process
        return secrets.token_hex(32)


def init_pages(app: Flask) -> None:
    """Add the pages to the application (the one line ``create_app`` calls)."""
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(app)
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid for the session's life
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compile_translations())
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", os.environ.get("SANDBOX_TIMEZONE", "Asia/Shanghai"))
    Babel(app, locale_selector=select_locale)

    from sandbox.web.pages import (  # noqa: F401 - each module adds its routes to bp
        applications, audit, catalog, disclosure, grants, home, jobs,
    )

    app.add_template_global(generate_csrf, "csrf_token")
    app.add_template_global(who, "current_actor")
    app.add_template_global(label, "label")
    app.add_template_filter(fmt_datetime, "dt")
    app.add_template_filter(fmt_number, "num")
    app.add_template_filter(fmt_date, "date_only")
    app.add_template_filter(fmt_money, "money")
    app.register_blueprint(bp)

    limiter = app.extensions.get("sandbox.limiter")
    if limiter is not None:  # the API's per-token limit; static files and job polling are not API calls
        limiter.exempt(bp)

    @app.context_processor
    def _locale_context() -> dict:
        loc = get_locale()
        return {"locale": str(loc) if loc else "en", "Markup": Markup}
