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
from typing import Any, NoReturn

import click

from sandbox.actors import Actor
from sandbox.cli.backend import Backend, LocalBackend, RemoteBackend
from sandbox.errors import InvalidInput, SandboxError
from sandbox.home import Home
from sandbox.services import Services, home_from
from sandbox.users import ROLES

log = logging.getLogger("sandbox")


class State:
    """What every command gets as ``ctx.obj``: the home, who is acting, and services on demand."""

    def __init__(self, home: Home, actor: Actor, as_json: bool, server: str | None = None,
                 token: str | None = None) -> None:
        self.home = home
        self.actor = actor
        self.as_json = as_json
        self.server = server
        self.token = token

    @cached_property
    def backend(self) -> Backend:
        """The server's API with --server, else this machine's home."""
        if self.server:
            from sandbox.client import Client

            return RemoteBackend(Client(self.server, self.token))
        return LocalBackend(self.services, self.actor)

    def local_only(self, what: str) -> None:
        if self.server:
            raise InvalidInput(f"{what} works on a sandbox home on this machine, not through --server",
                               "run it on the server's machine, without --server")

    @cached_property
    def services(self) -> Services:
        if self.server:  # a command not yet on the backend must never act on a local home by mistake
            raise InvalidInput("this command does not work through --server yet",
                               "run it on the server's machine with --home, without --server")
        services = Services.open(self.home, self.actor)
        click.get_current_context().call_on_close(services.close)
        return services

    def emit(self, payload: Any, human: str) -> None:
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str) if self.as_json else human)


def _fail(message: str, hint: str, code: int, kind: str = "error",
          ctx: click.Context | None = None) -> NoReturn:
    """The one shape of every error a user sees: `error:` first, then `what to do:`, no traceback.

    With ``--json`` the same error is one JSON object ``{"error": {code, message, hint}}`` on stderr.
    """
    if _wants_json(ctx):
        payload = {"error": {"code": kind, "message": message, "hint": hint}}
        click.echo(json.dumps(payload, ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {message}", err=True)
        click.echo(f"  what to do: {hint}", err=True)
    sys.exit(code)


def _wants_json(ctx: click.Context | None) -> bool:
    """Whether the root ``--json`` flag was given (known even before ``main`` ran, from the parsed params)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return False
    state = ctx.find_object(State)
    if state is not None:
        return state.as_json
    return bool(ctx.find_root().params.get("as_json"))


def _usage_failed(err: click.ClickException, ctx: click.Context | None = None) -> NoReturn:
    where_ctx = getattr(err, "ctx", None)
    where = where_ctx.command_path if where_ctx is not None else "sandbox"
    _fail(err.format_message(), f"see `{where} --help` for the arguments and options", err.exit_code or 2,
          "usage", where_ctx or ctx)


def _cli_hint(ctx: click.Context, err: SandboxError) -> str:
    """The hint for a command-line user: the API's hints speak of HTTP headers, not of --token."""
    state = ctx.find_object(State)
    if err.code == "unauthorized" and state is not None and state.server:
        if not state.token:
            return ("set $SANDBOX_TOKEN or pass --token (an operator makes one with "
                    "`sandbox token create USER`)")
        return ("check $SANDBOX_TOKEN / --token: the server does not accept it (expired, revoked or "
                "mistyped?); ask an operator for a new one (`sandbox token create USER`)")
    return err.hint or "see `sandbox --help`"


class SandboxGroup(click.Group):
    """Turns every SandboxError, usage error and unexpected failure into a clear message and a non-zero exit."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.ClickException as err:
            _usage_failed(err, ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SandboxError as err:
            _fail(err.message, _cli_hint(ctx, err), err.exit_code if err.exit_code != 0 else 1, err.code, ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.ClickException as err:
            _usage_failed(err, ctx)
        except (click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
            # a path given on the command line (an output file, an export folder) that cannot be used
            where = f" {err.filename}" if getattr(err, "filename", None) else ""
            _fail(f"cannot use the file or folder{where}: {err.strerror or 'no such file or folder'}",
                  "check the path (its folder must exist and be writable), then run the command again", 1,
                  "invalid_input", ctx)
        except Exception:
            log.exception("unexpected failure")
            _fail(
                "the sandbox failed unexpectedly; nothing was half-done in the database",
                f"try again; if it fails again, give the operator the details in {_log_file(ctx)}",
                70, "internal", ctx,
            )


def _log_file(ctx: click.Context) -> Path:
    state = ctx.find_object(State)
    root = state.home.root if state else Path.home()
    return log_path(root)


def log_path(root: Path) -> Path:
    """Where the commands run on a home log (unexpected failures, the worker's and the server's lines)."""
    return root / "logs" / "sandbox.log"


_LOG_FILES: set[Path] = set()


def _setup_logging(home: Home) -> None:
    folder = home.root / "logs"
    if folder.parent.exists():
        folder.mkdir(exist_ok=True)
        path = (folder / "sandbox.log").resolve()
        if path in _LOG_FILES:  # once per process, however many commands it runs
            return
        _LOG_FILES.add(path)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)


@click.group(cls=SandboxGroup)
@click.option("--home", type=click.Path(file_okay=False), envvar="SANDBOX_HOME", help="Sandbox home folder.")
@click.option("--user", "user", envvar="SANDBOX_USER", help="Who is acting (recorded in the audit log).")
@click.option("--role", envvar="SANDBOX_ROLE", default="operator", show_default=True, type=click.Choice(ROLES),
              help="Role of the acting user.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--server", envvar="SANDBOX_SERVER", help="Work against this sandbox server (URL) instead of a home.")
@click.option("--token", envvar="SANDBOX_TOKEN", help="API token for --server (or $SANDBOX_TOKEN).")
@click.pass_context
def main(ctx: click.Context, home: str | None, user: str | None, role: str, as_json: bool,
         server: str | None, token: str | None) -> None:
    """Data sandbox: usable but not visible (数据可用不可见)."""
    home_obj = home_from(home)
    _setup_logging(home_obj)
    if server is None and token is None and home is None:
        server, token = _client_config()
    elif server and token is None:
        token = _client_config()[1]
    ctx.obj = State(home_obj, Actor(user or getpass.getuser(), role), as_json, server, token)


def client_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sandbox" / "client.toml"


def _client_config() -> tuple[str | None, str | None]:
    """``server`` and ``token`` from ~/.config/sandbox/client.toml, if it exists."""
    import tomllib

    path = client_config_path()
    if not path.is_file():
        return None, None
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise click.ClickException(f"{path} is not valid TOML ({err}); fix or remove it") from None
    return doc.get("server"), doc.get("token")


@main.command()
@click.pass_obj
def init(state: State) -> None:
    """Create a home: database, master key and audit signing key (files 0600)."""
    state.local_only("`sandbox init`")
    services = Services.init(state.home, state.actor)
    services.close()
    state.emit(
        {"home": str(state.home.root)},
        f"initialised sandbox home at {state.home.root}\n"
        f"  audit verify key: {state.home.verify_key} (give it to your reviewers)",
    )
