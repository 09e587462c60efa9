"""The root of the one CLI, ``sandbox``: global options, error handling, ``init``.

Errors a user can meet are printed as what was wrong and what to do, with no traceback;
anything unexpected is logged under the home and reported in one line.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from sandbox.actors import Actor
from sandbox.errors import SandboxError
from sandbox.home import Home
from sandbox.services import Services, home_from

log = logging.getLogger("sandbox")


class State:
    """What every command gets as ``ctx.obj``: the home, who is acting, and services on demand."""

    def __init__(self, home: Home, actor: Actor, as_json: bool) -> None:
        self.home = home
        self.actor = actor
        self.as_json = as_json

    @cached_property
    def services(self) -> Services:
        services = Services.open(self.home, self.actor)
        click.get_current_context().call_on_close(services.close)
        return services

    def emit(self, payload: Any, human: str) -> None:
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str) if self.as_json else human)


class SandboxGroup(click.Group):
    """Turns every SandboxError into a clear two-line message and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SandboxError as err:
            click.echo(f"error: {err.message}", err=True)
            if err.hint:
                click.echo(f"  what to do: {err.hint}", err=True)
            sys.exit(err.exit_code if err.exit_code != 0 else 1)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception:
            log.exception("unexpected failure")
            click.echo(
                "error: the sandbox failed unexpectedly; nothing was half-done in the database"
                f" (details in {_log_file(ctx)})",
                err=True,
            )
            sys.exit(70)


def _log_file(ctx: click.Context) -> Path:
    state = ctx.find_object(State)
    root = state.home.root if state else Path.home()
    return root / "logs" / "sandbox.log"


def _setup_logging(home: Home) -> None:
    folder = home.root / "logs"
    if folder.parent.exists():
        folder.mkdir(exist_ok=True)
        handler = logging.FileHandler(folder / "sandbox.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)


@click.group(cls=SandboxGroup)
@click.option("--home", type=click.Path(file_okay=False), envvar="SANDBOX_HOME", help="Sandbox home folder.")
@click.option("--user", "user", envvar="SANDBOX_USER", help="Who is acting (recorded in the audit log).")
@click.option("--role", envvar="SANDBOX_ROLE", default="operator", show_default=True, help="Role of the acting user.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def main(ctx: click.Context, home: str | None, user: str | None, role: str, as_json: bool) -> None:
    """Data sandbox: usable but not visible (数据可用不可见)."""
    home_obj = home_from(home)
    _setup_logging(home_obj)
    ctx.obj = State(home_obj, Actor(user or getpass.getuser(), role), as_json)


@main.command()
@click.pass_obj
def init(state: State) -> None:
    """Create a home: database, master key and audit signing key (files 0600)."""
    services = Services.init(state.home, state.actor)
    services.close()
    state.emit(
        {"home": str(state.home.root)},
        f"initialised sandbox home at {state.home.root}\n"
        f"  audit verify key: {state.home.verify_key} (give it to your reviewers)",
    )
