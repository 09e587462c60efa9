"""``sandbox serve``: run the JSON API (and the embedded worker) on this machine's home."""
from __future__ import annotations

import click

from sandbox.cli.root import State, log_path


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1, or the server config].")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port [default: 8750].")
@click.option("--worker/--no-worker", default=None,
              help="Run the embedded worker thread (one machine) [default: on, or the server config].")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@click.pass_obj
def serve(state: State, host: str | None, port: int | None, worker: bool | None, threads: int) -> None:
    """Serve the JSON API (/api/v1, spec at /openapi.json) with waitress."""
    from sandbox.web.serve import serve as run

    state.local_only("`sandbox serve`")
    config: dict = {"home": str(state.home.root)}
    for key, value in (("host", host), ("port", port), ("worker", worker)):
        if value is not None:
            config[key] = value
    click.echo(f"server log (API errors, the embedded worker's failures): {log_path(state.home.root)}", err=True)
    run(config, say=lambda line: click.echo(line, err=True), threads=threads)
