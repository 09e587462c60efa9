"""Commands of governance: users and tokens, applications for access, the disclosure report."""
from __future__ import annotations

import click

from sandbox.cli.root import State
from sandbox.cli.text import fields, table
from sandbox.disclosure import SECTIONS, to_csv, to_csv_all, to_json
from sandbox.grants import USER_TYPES
from sandbox.users import ROLES

# -- users and tokens -------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Users of the server: names, roles and organisations."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--org", "organisation", help="The user's organisation (shown in the disclosure report).")
@click.pass_obj
def user_add(state: State, name: str, role: str, organisation: str | None) -> None:
    """Add a user NAME with a role (operator, provider, analyst or reviewer)."""
    made = state.backend.users.add(name, role, organisation)
    state.emit(made, f"added {role} {name}" + (f" of {organisation}" if organisation else "")
               + f"\n  make a token for them with `sandbox token create {name}`")


@user.command("list")
@click.pass_obj
def user_list(state: State) -> None:
    """Every user: name, role, organisation."""
    items = state.backend.users.list()
    state.emit(items, table(items, ["name", "role", "organisation", "created_at"]))


@click.group()
def token() -> None:
    """API tokens: made once, stored hashed, revocable, with an expiry."""


@token.command("create")
@click.argument("user_name", metavar="USER")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650))
@click.option("--label", default="", help="What the token is for, e.g. the machine it lives on.")
@click.pass_obj
def token_create(state: State, user_name: str, days: int, label: str) -> None:
    """Make a token for USER: only the token on stdout (`export SANDBOX_TOKEN=$(sandbox token create USER)`)."""
    secret, info = state.backend.users.create_token(user_name, days=days, label=label)
    if state.as_json:
        state.emit({**info, "token": secret}, secret)
        return
    click.echo(secret)
    click.echo(  # on stderr, so that $(sandbox token create USER) captures the token alone
        f"warning: this token is shown once and cannot be shown again; give it to {user_name} over a\n"
        f"  safe channel. It expires on {info['expires_at'][:10]}; revoke it with "
        f"`sandbox token revoke {info['id']}`.",
        err=True,
    )


@token.command("list")
@click.option("--user", "user_name", help="Only this user's tokens.")
@click.pass_obj
def token_list(state: State, user_name: str | None) -> None:
    """Tokens (never their secrets): owner, status, expiry, label."""
    items = state.backend.users.tokens(user_name)
    rows = [{**t, "expires_at": t["expires_at"][:10]} for t in items]
    state.emit(items, table(rows, ["id", "user", "status", "expires_at", "label"]))


@token.command("revoke")
@click.argument("token_id")
@click.pass_obj
def token_revoke(state: State, token_id: str) -> None:
    """Revoke a token: it is refused from now on."""
    info = state.backend.users.revoke_token(token_id)
    state.emit(info, f"token {token_id} of {info['user']} is revoked; it is refused from now on")


# -- applications -----------------------------------------------------------------------------


def _app_summary(app: dict) -> str:
    if app["state"] == "info_requested":
        clock = f"paused, {app['working_days_left']} working day(s) left when resumed"
    elif app["state"] == "submitted":
        left = app["working_days_left"]
        clock = (f"OVERDUE by {-left} working day(s) (deadline {app['deadline']})" if app["overdue"]
                 else f"answer due by {app['deadline']} ({left} working day(s) left)")
    else:
        clock = app["state"] + (f", grant {app['grant_id']}" if app.get("grant_id") else "")
    return f"application {app['id']} on {', '.join(app['datasets'])}: {app['state']}; {clock}"


@click.command()
@click.option("--dataset", "datasets", required=True, multiple=True, help="Repeat for several datasets.")
@click.option("--purpose", required=True, help="What the analysis is for.")
@click.option("--scenario", required=True, help="Where the results will be used.")
@click.option("--epsilon", type=float, help="Requested privacy budget per dataset (default: each policy's).")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650), help="Requested term.")
@click.option("--user-type", type=click.Choice(USER_TYPES), required=True)
@click.pass_obj
def apply(state: State, datasets: tuple[str, ...], purpose: str, scenario: str, epsilon: float | None,
          days: int, user_type: str) -> None:
    """Apply for access to datasets (as an analyst)."""
    app = state.backend.applications.apply(
        datasets=list(datasets), purpose=purpose, scenario=scenario, epsilon=epsilon,
        days=days, user_type=user_type,
    )
    note = ("\n  all datasets are unconditional-open: no review needed, the grant is ready"
            if app["auto_approved"] else "")
    state.emit(app, _app_summary(app) + note)


@click.group()
def application() -> None:
    """Review applications: list, show, approve, refuse, ask for information; reply as the analyst."""


@application.command("list")
@click.option("--overdue", is_flag=True, help="Only applications past their deadline.")
@click.option("--state", "state_name", type=click.Choice(["submitted", "info_requested", "approved", "refused",
                                                          "withdrawn"]))
@click.option("--analyst")
@click.pass_obj
def application_list(state: State, overdue: bool, state_name: str | None, analyst: str | None) -> None:
    """Applications, with their deadlines in working days; overdue ones marked."""
    items = state.backend.applications.list(analyst=analyst, state=state_name, overdue=True if overdue else None)
    rows = [{**a, "datasets": ",".join(a["datasets"]), "deadline": a["deadline"] or "(paused)",
             "left": "" if a["working_days_left"] is None else a["working_days_left"],
             "overdue": "OVERDUE" if a["overdue"] else ""} for a in items]
    state.emit(items, table(rows, ["id", "analyst", "organisation", "datasets", "state", "deadline", "left",
                                    "overdue"]))


@application.command("show")
@click.argument("app_id")
@click.pass_obj
def application_show(state: State, app_id: str) -> None:
    """One application in full, with its history."""
    app = state.backend.applications.get(app_id)
    head = fields(app, ("id", "analyst", "organisation", "datasets", "purpose", "scenario", "epsilon", "days",
                        "user_type", "state", "deadline", "working_days_left", "overdue", "reason", "grant_id"))
    if app.get("calendar_note"):
        head += f"\nnote: {app['calendar_note']}"
    history = "\n".join(f"  {m['time'][:16]} {m['author']} ({m['role']}) {m['kind']}: {m['text']}"
                        for m in app["history"])
    state.emit(app, head + "\n\nhistory:\n" + history)


@application.command("approve")
@click.argument("app_id")
@click.option("--epsilon", type=float, help="Budget per dataset, if not what was requested.")
@click.option("--days", type=click.IntRange(1, 3650), help="Term, if not what was requested.")
@click.option("--note", default="")
@click.pass_obj
def application_approve(state: State, app_id: str, epsilon: float | None, days: int | None, note: str) -> None:
    """Approve an application: this creates the analyst's grant."""
    app = state.backend.applications.approve(app_id, epsilon=epsilon, days=days, note=note)
    state.emit(app, f"application {app_id} approved: grant {app['grant_id']} for {app['analyst']}")


@application.command("refuse")
@click.argument("app_id")
@click.option("--reason", required=True, help="Why; the analyst is told it.")
@click.pass_obj
def application_refuse(state: State, app_id: str, reason: str) -> None:
    """Refuse an application, with a reason the analyst is told."""
    app = state.backend.applications.refuse(app_id, reason)
    state.emit(app, f"application {app_id} refused: {reason}")


@application.command("ask")
@click.argument("app_id")
@click.option("--question", required=True)
@click.pass_obj
def application_ask(state: State, app_id: str, question: str) -> None:
    """Ask the analyst for more information (pauses the deadline)."""
    app = state.backend.applications.ask_info(app_id, question)
    state.emit(app, f"asked {app['analyst']}; the deadline is paused until they reply "
                    f"({app['working_days_left']} working day(s) left)")


@application.command("reply")
@click.argument("app_id")
@click.option("--text", required=True)
@click.pass_obj
def application_reply(state: State, app_id: str, text: str) -> None:
    """Answer the operator's question (as the analyst); the deadline runs again."""
    app = state.backend.applications.reply(app_id, text)
    state.emit(app, _app_summary(app))


@application.command("withdraw")
@click.argument("app_id")
@click.pass_obj
def application_withdraw(state: State, app_id: str) -> None:
    """Withdraw your application (as the analyst)."""
    app = state.backend.applications.withdraw(app_id)
    state.emit(app, f"application {app_id} withdrawn")


# -- disclosure -------------------------------------------------------------------------------


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option("--section", type=click.Choice(SECTIONS), help="CSV: only this section.")
@click.pass_obj
def disclosure(state: State, fmt: str, section: str | None) -> None:
    """The public disclosure report: authorisations, products and prices, usage."""
    report = state.backend.disclosure_report()
    if fmt == "json" or state.as_json:
        click.echo(to_json(report))
    elif fmt == "csv":
        click.echo(to_csv(report, section) if section else to_csv_all(report), nl=False)
    else:
        auth = [{**a, "datasets": ",".join(a["datasets"])} for a in report["authorisations"]]
        click.echo("authorisations\n" + table(auth, ["organisation", "datasets", "purpose", "user_type", "from",
                                                      "until", "status"]))
        products = [{"dataset": p["dataset"], "openness": p["openness"], "provider": p["provider"]}
                    for p in report["products"]]
        click.echo("\nproducts\n" + table(products, ["dataset", "openness", "provider"]))
        click.echo("\nusage\n" + table(report["usage"], ["dataset", "answers_released", "jobs", "epsilon_spent",
                                                           "fees"]))
        click.echo(f"compute fees: {report['compute_fees']}")
        apps = report["applications"]
        click.echo("\napplications: " + ", ".join(f"{k} {v}" for k, v in apps.items()))
