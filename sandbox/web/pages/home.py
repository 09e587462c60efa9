"""The start page, signing in and out, and the language switch."""
from __future__ import annotations

from flask import make_response, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from sandbox.errors import AuthFailed, NotFound
from sandbox.users import parse_token
from sandbox.web.pages import LANG_COOKIE, LOCALES, bp, fmt_datetime, safe_next, services, who


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    actor = who()
    svc = services()
    counts = {"datasets": len(svc.catalog.names())}
    return render_template("pages/index.html", actor=actor, counts=counts)


@bp.route("/signin", methods=["GET", "POST"])
def signin():  # type: ignore[no-untyped-def]
    """Sign in with a user name and one of that user's API tokens (see docs/web.md)."""
    error = None
    name = ""
    target = safe_next(request.values.get("next"))
    if request.method == "POST":
        name = (request.form.get("user") or "").strip()
        token = (request.form.get("token") or "").strip()
        svc = services()
        try:
            actor = svc.users.authenticate(token or None, source=request.remote_addr or "")
        except AuthFailed as err:
            actor = None
            error = _ended_token(name, token, err)
        if actor is not None and actor.name != name:
            svc.audit.append(
                actor="anonymous", role="public", action="auth.failed", outcome="unauthorized",
                objects={"user": name[:100]} if name else {},
                details={"reason": "name_mismatch", "source": (request.remote_addr or "")[:100], "via": "pages"},
            )
            actor = None
        if error is None and (actor is None or actor.role not in ("operator", "provider", "analyst", "reviewer")):
            error = _("The user name and token do not match an active token. Check both, or ask an operator for a new token.")
        if error is None and actor is not None:
            token_id = parse_token(token)[0]  # type: ignore[index]
            session.clear()
            session["user"], session["token_id"] = actor.name, token_id
            session.permanent = False
            svc.audit.append(actor=actor.name, role=actor.role, action="auth.signed_in",
                             objects={"user": actor.name, "token": token_id}, details={"via": "pages"})
            return redirect(target)
    status = 401 if error else 200
    return render_template("pages/signin.html", error=error, name=name, next=target), status


def _ended_token(name: str, token: str, err: AuthFailed) -> str | None:
    """What to tell someone whose token was right but has expired or was revoked.

    ``Users.authenticate`` names the token in its message only once the secret has matched
    (an unknown token or a wrong secret gets the same words as any other), so telling the
    token's state then leaks nothing to someone who does not hold it. The user name must be
    the token's owner too; anything else gets the generic message.
    """
    parsed = parse_token(token) if token else None
    if parsed is None or parsed[0] not in err.message:
        return None
    try:
        row = next((t for t in services().users.tokens(name) if t["id"] == parsed[0]), None)
    except NotFound:
        return None
    if row is None:
        return None
    if row["status"] == "expired":
        return _("This token expired on %(date)s. Ask an operator for a new token, then sign in with it.",
                 date=fmt_datetime(row["expires_at"]))
    if row["status"] == "revoked":
        return _("This token was revoked on %(date)s. Sign in with another of your tokens, or ask an operator "
                 "for a new one.", date=fmt_datetime(row["revoked_at"]))
    return None


@bp.post("/signout")
def signout():  # type: ignore[no-untyped-def]
    session.clear()
    return redirect(url_for("pages.index"))


@bp.get("/lang/<code>")
def language(code: str):  # type: ignore[no-untyped-def]
    """The language switch: remembered in a cookie for a year."""
    resp = make_response(redirect(safe_next(request.args.get("next"))))
    if code in LOCALES:
        resp.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return resp
