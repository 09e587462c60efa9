"""Commands for scripts and jobs: run on mock data, submit, follow, cancel, and the worker."""
from __future__ import annotations

import hashlib
import signal
import sys
import threading
from pathlib import Path

import click

from sandbox.cli.root import State, log_path
from sandbox.cli.text import fields, table
from sandbox.errors import AlreadyExists, InvalidInput, NotFound, SandboxError


def _read_script(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no script {path}", "pass the path of your analysis script") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text", "save the script as UTF-8") from None


def _worker(state: State, pool_size: int = 0):  # type: ignore[no-untyped-def]
    """A worker for this command; closed (its pool stopped) when the command ends."""
    from sandbox.jobs.worker import Worker

    state.local_only("the worker")
    worker = Worker(state.services, pool_size=pool_size)
    click.get_current_context().call_on_close(worker.close)
    return worker


def _query_digest(q: dict) -> str:
    """What a query asked, in a few words: its aggregates' names and its group_by."""
    doc = q.get("query")
    if not isinstance(doc, dict):  # read back from the ledger (the worker died): only the digest is known
        return f"digest {str(q.get('digest') or '')[:12]}"
    names = ", ".join(str(a.get("name") or a.get("op")) for a in doc.get("aggregates") or [] if isinstance(a, dict))
    by = ", ".join(map(str, doc.get("group_by") or []))
    return f"{names} by {by}" if by else names


def _queries_table(queries: list[dict]) -> str:
    """Every query a job asked: dataset, epsilon charged, whether it was free (asked before), what it asked."""
    rows = [{"dataset": q.get("dataset", ""), "epsilon": f"{q.get('epsilon') or 0.0:g}",
             "cached": "yes" if q.get("cached") else "", "query": _query_digest(q)} for q in queries]
    return table(rows, ["dataset", "epsilon", "cached", "query"])


def _violations(job: dict) -> str:
    """The script check's refusals, one line each: where and which rule."""
    return "\n".join(f"  line {v['line']}: [{v['rule']}] {v['message']}" for v in job["violations"])


def _report(state: State, job: dict) -> None:
    """A finished (or refused) job: its state, stdout, files and what it spent."""
    if job["state"] == "refused":
        state.emit(job, f"job {job['id']} refused by the script check:\n{_violations(job)}")
        sys.exit(3)
    label = " [MOCK: mock data, no budget spent]" if job["mock"] else ""
    lines = [f"job {job['id']}: {job['state']}{label}"]
    if job["reason"]:
        lines.append(f"  {job['reason']}")
    full = state.backend.job_logs(job["id"])
    if full["stdout"]:
        lines += ["", full["stdout"].rstrip()]
    if full["stderr"] and job["state"] != "succeeded":
        lines += ["", "stderr:", full["stderr"].rstrip()]
    lines.append("")
    lines += [f"output: {state.backend.output_location(job['id'], o['name'])} ({o['size']} bytes)"
              for o in job["outputs"]]
    if job["outputs"] and state.backend.remote:
        lines.append(f"  download them with `sandbox job download {job['id']} -o DIR`")
    lines.append(f"queries: {len(job['queries'])}, epsilon spent: {job['epsilon_spent']:g}")
    if job["queries"]:
        lines.append(_queries_table(job["queries"]))
    state.emit(job, "\n".join(lines))
    if job["state"] != "succeeded":
        sys.exit(4)


@click.command()
@click.argument("script", type=click.Path(dir_okay=False))
@click.option("--mock", is_flag=True, required=True, help="Run against mock data (required: real runs use `submit`).")
@click.option("--dataset", "datasets", multiple=True, help="Datasets the mock broker serves (default: all).")
@click.pass_obj
def run(state: State, script: str, mock: bool, datasets: tuple[str, ...]) -> None:
    """Run SCRIPT now in a sealed container against MOCK data: no grant, no budget."""
    job = state.backend.submit(Path(script).name, _read_script(script), mock_datasets=list(datasets) or None)
    if job["state"] == "queued":
        job = state.backend.run_now(job["id"])
    _report(state, job)


@click.command()
@click.argument("script", type=click.Path(dir_okay=False))
@click.option("--grant", "grant_id", required=True)
@click.option("--wait", is_flag=True,
              help="Wait for the job's end and show its results (on a home: run it in this process now).")
@click.pass_obj
def submit(state: State, script: str, grant_id: str, wait: bool) -> None:
    """Check SCRIPT and queue it as a job under a grant."""
    job = state.backend.submit(Path(script).name, _read_script(script), grant_id=grant_id)
    if job["state"] == "refused" or wait:
        if wait:
            job = state.backend.run_now(job["id"])
        _report(state, job)
        return
    runs = ("the server's worker runs it" if state.backend.remote
            else "a worker runs it: `sandbox worker`")
    state.emit(job, f"{job['id']} queued; follow it with `sandbox job status {job['id']}` ({runs})")


@click.group()
def job() -> None:
    """Follow, read, download and cancel jobs."""


@job.command("list")
@click.option("--owner")
@click.pass_obj
def job_list(state: State, owner: str | None) -> None:
    """Jobs, newest first: state, grant, script name."""
    items = state.backend.jobs(owner)
    state.emit(items, table(items, ["id", "owner", "state", "grant_id", "mock", "script_name", "submitted_at"]))


@job.command("status")
@click.argument("job_id")
@click.pass_obj
def job_status(state: State, job_id: str) -> None:
    """A job's state, times, image digest, script SHA-256, and every query with its epsilon."""
    info = state.backend.job(job_id)
    shown = ("id", "state", "reason", "owner", "grant_id", "mock", "runner", "isolation", "image_digest",
             "script_sha256", "submitted_at", "started_at", "finished_at", "epsilon_spent")
    text = fields(info, (k for k in shown if info[k] not in (None, "")))
    if info.get("queries"):
        text += f"\n\nqueries ({len(info['queries'])}):\n" + _queries_table(info["queries"])
    state.emit(info, text)


@job.command("logs")
@click.argument("job_id")
@click.pass_obj
def job_logs(state: State, job_id: str) -> None:
    """The job's captured stdout, then its stderr."""
    found = state.backend.job_logs(job_id)
    state.emit(found, found["stdout"] + (f"\n--- stderr ---\n{found['stderr']}" if found["stderr"] else ""))


@job.command("results")
@click.argument("job_id")
@click.pass_obj
def job_results(state: State, job_id: str) -> None:
    """A job's outcome: stdout, output files, every query and its epsilon."""
    _report(state, state.backend.job(job_id))


@job.command("cancel")
@click.argument("job_id")
@click.pass_obj
def job_cancel(state: State, job_id: str) -> None:
    """Cancel a queued job, or stop a running one."""
    info = state.backend.cancel_job(job_id)
    state.emit(info, f"job {job_id}: {'cancelled' if info['state'] == 'cancelled' else 'stopping'}")


@job.command("script")
@click.argument("job_id")
@click.pass_obj
def job_script(state: State, job_id: str) -> None:
    """Exactly what ran: the script text, its SHA-256 (checked here) and the image digest."""
    info = state.backend.job_script(job_id)
    actual = hashlib.sha256(info["script"].encode("utf-8")).hexdigest()
    matches = actual == info["script_sha256"]
    check = "matches the text below" if matches else f"DOES NOT MATCH the text below (its SHA-256 is {actual})"
    head = "\n".join([
        f"job: {info['id']}", f"script: {info['script_name']}",
        f"script_sha256: {info['script_sha256']} ({check})",
        f"image_digest: {info['image_digest'] or '(none recorded: not run yet, or run without an image)'}",
    ])
    state.emit(info, f"{head}\n\n{info['script'].rstrip()}")
    if not matches:
        sys.exit(1)


@job.command("download")
@click.argument("job_id")
@click.option("--name", "names", multiple=True, help="Only this output file (repeat for several) [default: all].")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write the files to (made if missing; existing files are not overwritten).")
@click.pass_obj
def job_download(state: State, job_id: str, names: tuple[str, ...], out_dir: str) -> None:
    """Download a job's output files into a folder, each checked against its recorded SHA-256."""
    listed = {o["name"]: o for o in state.backend.job(job_id)["outputs"]}
    if not listed:
        raise NotFound(f"job {job_id} has no output files",
                       f"see what it printed with `sandbox job results {job_id}`")
    wanted = list(dict.fromkeys(names)) or list(listed)
    for name in wanted:
        if name not in listed:
            raise NotFound(f"job {job_id} has no output named {name!r}", f"its files are: {', '.join(listed)}")
        if Path(name).name != name or name in (".", ".."):
            raise InvalidInput(f"the output name {name!r} is not a plain file name", "tell the operator")
    folder = Path(out_dir)
    taken = [str(folder / n) for n in wanted if (folder / n).exists()]
    if taken:
        raise AlreadyExists(f"download would overwrite {', '.join(taken)}",
                            "download into another folder, or move those files away first")
    files = {}
    for name in wanted:
        data = state.backend.job_output(job_id, name)
        digest = hashlib.sha256(data).hexdigest()
        if listed[name].get("sha256") not in (None, digest):
            raise SandboxError(f"the downloaded {name} does not match the SHA-256 the job recorded",
                               "download it again; if it still differs, tell the operator")
        files[name] = (data, digest)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (data, digest) in files.items():
        (folder / name).write_bytes(data)
        written.append({"name": name, "path": str(folder / name), "size": len(data), "sha256": digest})
    state.emit(written, "\n".join(f"wrote {w['path']} ({w['size']} bytes, sha256 {w['sha256']})" for w in written))


@click.command()
@click.option("--once", is_flag=True, help="Run the queued jobs, then stop.")
@click.option("--pool", "pool_size", type=click.IntRange(0, 64), default=None,
              help="Pre-started single-use containers [default: $SANDBOX_POOL_SIZE, else the runtime policy's; 0 with --once].")
@click.pass_obj
def worker(state: State, once: bool, pool_size: int | None) -> None:
    """Run queued jobs in sealed containers (recovering jobs a dead worker left behind)."""
    from sandbox.jobs.worker import pool_size_from_env

    if pool_size is None:
        pool_size = pool_size_from_env(0 if once else state.services.runtime.pool_size)
    runner = _worker(state, pool_size)
    click.echo(f"worker log (why a job failed in the worker): {log_path(state.home.root)}", err=True)
    closed = runner.recover()
    if closed:
        click.echo(f"closed {len(closed)} job(s) left running by a stopped worker: {', '.join(closed)}")
    if once:
        while runner.run_next():
            pass
        return
    click.echo(f"{runner.name} waiting for jobs (Ctrl-C to stop)")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        runner.run_forever(stop=stop)  # a job in progress runs to its end first
    finally:
        runner.close()  # removes the pool's unused pre-started containers


@click.command()
@click.option("--home", "demo_home", type=click.Path(file_okay=False), default="sandbox-demo", show_default=True,
              help="Folder for the demo's own home (remade on every run).")
@click.option("--farmers", default=100_000, show_default=True, type=click.IntRange(1000, 1_000_000))
def demo(demo_home: str, farmers: int) -> None:
    """The farmer-credit story end to end on synthetic data (the README's main command)."""
    from sandbox.demo import run_demo

    if not run_demo(Path(demo_home).resolve(), click.echo, n_farmers=farmers):
        sys.exit(1)
