"""Applications: the analyst's form and replies; the operator's queue sorted by deadline,
with working days left and overdue ones marked; approve, refuse with a reason, ask for
information."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from sandbox.errors import InvalidInput, SandboxError
from sandbox.grants import USER_TYPES
from sandbox.web.pages import bp, require_own, roles, services, who

READERS = ("analyst", "operator", "reviewer")


def visible_application(app_id: str) -> dict:
    info = services().applications.get(app_id)
    require_own("application", app_id, info["analyst"])
    return info


@bp.get("/applications")
@roles(*READERS)
def applications():  # type: ignore[no-untyped-def]
    actor = who()
    state = request.args.get("state") or None
    only_overdue = request.args.get("overdue") == "1"
    try:
        rows = services().applications.list(analyst=actor.name if actor.role == "analyst" else None,
                                            state=state, overdue=True if only_overdue else None)
    except InvalidInput:
        rows, state = [], None
    return render_template("pages/applications.html", apps=rows, state=state or "", only_overdue=only_overdue)


def _datasets() -> list[dict]:
    cat = services().catalog
    return [d for d in (cat.describe(n) for n in cat.names()) if d["openness"] != "not_open"]


@bp.route("/applications/new", methods=["GET", "POST"])
@roles("analyst")
def new_application():  # type: ignore[no-untyped-def]
    form = {"datasets": request.args.getlist("dataset"), "purpose": "", "scenario": "", "epsilon": "",
            "days": "90", "user_type": "public_welfare"}
    error = None
    if request.method == "POST":
        form = {"datasets": request.form.getlist("datasets"),
                **{k: (request.form.get(k) or "").strip() for k in ("purpose", "scenario", "epsilon", "days", "user_type")}}
        try:
            try:
                epsilon = float(form["epsilon"]) if form["epsilon"] else None
                days = int(form["days"])
            except ValueError:
                raise InvalidInput(_("The budget must be a number and the term a whole number of days."), "") from None
            if not form["datasets"]:
                raise InvalidInput(_("Choose at least one dataset."), "")
            app = services().applications.apply(
                who(), datasets=form["datasets"], purpose=form["purpose"], scenario=form["scenario"],
                epsilon=epsilon, days=days, user_type=form["user_type"])
            flash(_("Application %(id)s was submitted.", id=app["id"]), "ok")
            return redirect(url_for("pages.application", app_id=app["id"]))
        except SandboxError as err:
            error = err.message + (f" — {err.hint}" if err.hint else "")
    return render_template("pages/application_new.html", form=form, datasets=_datasets(), user_types=USER_TYPES,
                           error=error), (422 if error else 200)


@bp.get("/applications/<app_id>")
@roles(*READERS)
def application(app_id: str):  # type: ignore[no-untyped-def]
    return render_template("pages/application.html", a=visible_application(app_id))


def _act(app_id: str, done: str, call) -> object:  # type: ignore[no-untyped-def]
    try:
        call()
        flash(done, "ok")
    except SandboxError as err:
        flash(err.message + (f" — {err.hint}" if err.hint else ""), "error")
    return redirect(url_for("pages.application", app_id=app_id))


@bp.post("/applications/<app_id>/approve")
@roles("operator")
def approve_application(app_id: str):  # type: ignore[no-untyped-def]
    def call() -> None:
        eps, days = request.form.get("epsilon") or "", request.form.get("days") or ""
        try:
            services().applications.approve(who(), app_id, epsilon=float(eps) if eps else None,
                                            days=int(days) if days else None,
                                            note=request.form.get("note") or "")
        except ValueError:
            raise InvalidInput(_("The budget must be a number and the term a whole number of days."), "") from None

    return _act(app_id, _("Approved: the grant was made."), call)


@bp.post("/applications/<app_id>/refuse")
@roles("operator")
def refuse_application(app_id: str):  # type: ignore[no-untyped-def]
    return _act(app_id, _("Refused; the analyst is told the reason."),
                lambda: services().applications.refuse(who(), app_id, request.form.get("reason") or ""))


@bp.post("/applications/<app_id>/ask")
@roles("operator")
def ask_application(app_id: str):  # type: ignore[no-untyped-def]
    return _act(app_id, _("The question was sent; the deadline is paused until the analyst replies."),
                lambda: services().applications.ask_info(who(), app_id, request.form.get("question") or ""))


@bp.post("/applications/<app_id>/reply")
@roles("analyst")
def reply_application(app_id: str):  # type: ignore[no-untyped-def]
    visible_application(app_id)
    return _act(app_id, _("Your reply was sent."),
                lambda: services().applications.reply(who(), app_id, request.form.get("text") or ""))


@bp.post("/applications/<app_id>/withdraw")
@roles("analyst")
def withdraw_application(app_id: str):  # type: ignore[no-untyped-def]
    visible_application(app_id)
    return _act(app_id, _("The application was withdrawn."),
                lambda: services().applications.withdraw(who(), app_id))
