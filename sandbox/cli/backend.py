"""What the CLI commands talk to: a small backend with two implementations.

* ``LocalBackend`` works on a sandbox home through ``Services``, acting as ``--user``/``--role``.
* ``RemoteBackend`` works on a server through ``sandbox.client.Client``, acting as the user
  its token stands for (``--server``/``--token``, ``$SANDBOX_SERVER``/``$SANDBOX_TOKEN`` or
  ``~/.config/sandbox/client.toml``).

Both return the same dicts (the API returns exactly what the domain classes return), so each
command formats its output once. ``users`` and ``applications`` are facades with the domain
classes' methods minus the ``actor`` argument (the backend knows who acts).
"""
from __future__ import annotations

import io
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from sandbox.actors import Actor


class Backend(Protocol):
    remote: bool
    users: Any
    applications: Any

    # catalog
    def datasets(self) -> list[dict]: ...
    def dataset(self, name: str) -> dict: ...
    def mock_frame(self, name: str, rows: int, seed: int) -> Any: ...
    def add_dataset(self, path: Path, name: str, policy: Path, replace: bool) -> dict: ...
    # grants and budgets
    def grants(self, analyst: str | None) -> list[dict]: ...
    def grant(self, grant_id: str) -> dict: ...
    def create_grant(self, **kw: Any) -> dict: ...
    def revoke_grant(self, grant_id: str, reason: str) -> dict: ...
    def extend_grant(self, grant_id: str, days: int) -> dict: ...
    def preview(self, grant_id: str, doc: dict) -> dict: ...
    def ask(self, grant_id: str, doc: dict) -> dict: ...
    # jobs
    def submit(self, name: str, source: str, *, grant_id: str | None = None,
               mock_datasets: list[str] | None = None) -> dict: ...
    def run_now(self, job_id: str) -> dict: ...
    def jobs(self, owner: str | None) -> list[dict]: ...
    def job(self, job_id: str) -> dict: ...
    def job_logs(self, job_id: str) -> dict: ...
    def cancel_job(self, job_id: str) -> dict: ...
    def output_location(self, job_id: str, name: str) -> str: ...
    def job_script(self, job_id: str) -> dict: ...
    def job_output(self, job_id: str, name: str) -> bytes: ...
    # audit
    def audit_verify(self) -> dict: ...
    def audit_entries(self, **filters: Any) -> list[dict]: ...
    def audit_entry(self, seq: int) -> dict: ...
    def audit_export(self, out_dir: Path) -> dict: ...
    # disclosure
    def disclosure_report(self) -> dict: ...


class _Acting:
    """A domain object whose actor-taking methods get the acting actor filled in."""

    def __init__(self, target: Any, actor: Actor, acting: set[str]) -> None:
        self._target, self._actor, self._acting = target, actor, acting

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        return partial(method, self._actor) if name in self._acting else method


class LocalBackend:
    remote = False

    def __init__(self, services: Any, actor: Actor) -> None:
        self.services = services
        self.actor = actor
        self.users = _Acting(services.users, actor, {"add", "create_token", "revoke_token"})
        self.applications = _Acting(services.applications, actor,
                                    {"apply", "approve", "refuse", "ask_info", "reply", "withdraw"})

    def datasets(self) -> list[dict]:
        catalog = self.services.catalog
        return [catalog.describe(d) for d in catalog.names()]

    def dataset(self, name: str) -> dict:
        return self.services.catalog.describe(name)

    def mock_frame(self, name: str, rows: int, seed: int) -> Any:
        return self.services.catalog.mock(name, rows=rows, seed=seed)

    def add_dataset(self, path: Path, name: str, policy: Path, replace: bool) -> dict:
        added = self.services.catalog.add(path, name, policy, self.actor, replace=replace)
        return {**self.services.catalog.describe(name), "warnings": list(added.warnings)}

    def grants(self, analyst: str | None) -> list[dict]:
        return self.services.grants.list(analyst)

    def grant(self, grant_id: str) -> dict:
        return self.services.grants.get(grant_id)

    def create_grant(self, **kw: Any) -> dict:
        return self.services.grants.create(self.actor, **kw)

    def revoke_grant(self, grant_id: str, reason: str) -> dict:
        return self.services.grants.revoke(self.actor, grant_id, reason)

    def extend_grant(self, grant_id: str, days: int) -> dict:
        return self.services.grants.extend(self.actor, grant_id, days)

    def preview(self, grant_id: str, doc: dict) -> dict:
        return self.services.broker.preview(self.actor, grant_id, doc)

    def ask(self, grant_id: str, doc: dict) -> dict:
        return self.services.broker.ask(self.actor, grant_id, doc)

    def submit(self, name: str, source: str, *, grant_id: str | None = None,
               mock_datasets: list[str] | None = None) -> dict:
        return self.services.jobs.submit(self.actor, name, source, grant_id=grant_id, mock_datasets=mock_datasets)

    def run_now(self, job_id: str) -> dict:
        from sandbox.jobs.worker import Worker

        worker = Worker(self.services, pool_size=0)
        try:
            return worker.run_next(job_id) or self.job(job_id)
        finally:
            worker.close()

    def jobs(self, owner: str | None) -> list[dict]:
        return self.services.jobs.list(owner)

    def job(self, job_id: str) -> dict:
        found = self.services.jobs.get(job_id)
        return {**found.to_dict(), "stdout": found.stdout, "stderr": found.stderr}

    def job_logs(self, job_id: str) -> dict:
        found = self.services.jobs.get(job_id)
        return {"stdout": found.stdout, "stderr": found.stderr}

    def cancel_job(self, job_id: str) -> dict:
        return self.services.jobs.cancel(self.actor, job_id)

    def output_location(self, job_id: str, name: str) -> str:
        return str(self.services.home.jobs / job_id / "out" / name)

    def job_script(self, job_id: str) -> dict:
        found = self.services.jobs.get(job_id)
        return {"id": found.id, "script_name": found.script_name, "script": found.script,
                "script_sha256": found.script_sha256, "image_digest": found.image_digest}

    def job_output(self, job_id: str, name: str) -> bytes:
        """One output file of a job, by its exact listed name (as the API serves it)."""
        from sandbox.errors import NotFound

        found = self.services.jobs.get(job_id)
        folder = (self.services.home.jobs / found.id / "out").resolve()
        path = (folder / name).resolve()
        if name not in {o["name"] for o in found.outputs} or path.parent != folder or not path.is_file():
            raise NotFound(f"job {job_id} has no output named {name!r}",
                           f"see the output files with `sandbox job results {job_id}`")
        return path.read_bytes()

    def audit_verify(self) -> dict:
        report = self.services.audit.verify()
        return {"ok": report.ok, "entries": report.size, "checkpoints": report.checkpoints,
                "problems": report.problems}

    def audit_entries(self, **filters: Any) -> list[dict]:
        return self.services.audit.entries(**filters)

    def audit_entry(self, seq: int) -> dict:
        return self.services.audit.entry(seq)

    def audit_export(self, out_dir: Path) -> dict:
        log = self.services.audit
        log.append(actor=self.actor.name, role=self.actor.role, action="audit.exported")
        log.checkpoint()  # so the export, its own entry included, is covered to the end
        return log.export(out_dir)

    def disclosure_report(self) -> dict:
        return self.services.disclosure.report()


class _RemoteUsers:
    def __init__(self, client: Any) -> None:
        self.c = client

    def add(self, name: str, role: str, organisation: str | None = None) -> dict:
        return self.c.add_user(name, role, organisation)

    def get(self, name: str) -> dict:
        return self.c.user(name)

    def list(self) -> list[dict]:
        return self.c.users()

    def create_token(self, user: str, days: int = 90, label: str = "") -> tuple[str, dict]:
        return self.c.create_token(user, days=days, label=label)

    def revoke_token(self, token_id: str) -> dict:
        return self.c.revoke_token(token_id)

    def tokens(self, user: str | None = None) -> list[dict]:
        return self.c.tokens(user)


class _RemoteApplications:
    def __init__(self, client: Any) -> None:
        self.c = client

    def apply(self, **kw: Any) -> dict:
        return self.c.apply(**kw)

    def approve(self, app_id: str, **kw: Any) -> dict:
        return self.c.approve(app_id, **kw)

    def refuse(self, app_id: str, reason: str) -> dict:
        return self.c.refuse(app_id, reason)

    def ask_info(self, app_id: str, question: str) -> dict:
        return self.c.ask_info(app_id, question)

    def reply(self, app_id: str, text: str) -> dict:
        return self.c.reply(app_id, text)

    def withdraw(self, app_id: str) -> dict:
        return self.c.withdraw(app_id)

    def get(self, app_id: str) -> dict:
        return self.c.application(app_id)

    def list(self, **kw: Any) -> list[dict]:
        return self.c.applications(**kw)


class RemoteBackend:
    remote = True

    def __init__(self, client: Any) -> None:
        self.client = client
        self.users = _RemoteUsers(client)
        self.applications = _RemoteApplications(client)

    def datasets(self) -> list[dict]:
        return self.client.datasets()

    def dataset(self, name: str) -> dict:
        return self.client.dataset(name)

    def mock_frame(self, name: str, rows: int, seed: int) -> Any:
        import polars as pl

        info = self.client.dataset(name)
        text = self.client.mock_csv(name, rows=rows, seed=seed)
        strings = {c["name"]: pl.String for c in info["columns"] if c.get("type") in ("string", "category")}
        return pl.read_csv(io.StringIO(text), schema_overrides=strings)

    def add_dataset(self, path: Path, name: str, policy: Path, replace: bool) -> dict:
        return self.client.add_dataset(path, name, policy, replace=replace)

    def grants(self, analyst: str | None) -> list[dict]:
        return self.client.grants(analyst)

    def grant(self, grant_id: str) -> dict:
        return self.client.grant(grant_id)

    def create_grant(self, **kw: Any) -> dict:
        return self.client.create_grant(**kw)

    def revoke_grant(self, grant_id: str, reason: str) -> dict:
        return self.client.revoke_grant(grant_id, reason)

    def extend_grant(self, grant_id: str, days: int) -> dict:
        return self.client.extend_grant(grant_id, days)

    def preview(self, grant_id: str, doc: dict) -> dict:
        return self.client.preview(grant_id, doc)

    def ask(self, grant_id: str, doc: dict) -> dict:
        return self.client.ask(grant_id, doc)

    def submit(self, name: str, source: str, *, grant_id: str | None = None,
               mock_datasets: list[str] | None = None) -> dict:
        if grant_id is None:
            return self.client.submit(source, name, mock=True, datasets=mock_datasets)
        return self.client.submit(source, name, grant_id=grant_id)

    def run_now(self, job_id: str) -> dict:
        """The server's worker runs it; wait for the end."""
        self.client.wait_job(job_id)
        return self.job(job_id)

    def jobs(self, owner: str | None) -> list[dict]:
        return self.client.jobs(owner)

    def job(self, job_id: str) -> dict:
        return self.client.job_results(job_id)

    def job_logs(self, job_id: str) -> dict:
        logs = self.client.job_logs(job_id)
        return {"stdout": logs["stdout"], "stderr": logs["stderr"]}

    def cancel_job(self, job_id: str) -> dict:
        return self.client.cancel_job(job_id)

    def output_location(self, job_id: str, name: str) -> str:
        return f"{self.client.base}/api/v1/jobs/{job_id}/outputs/{name}"

    def job_script(self, job_id: str) -> dict:
        return self.client.job_script(job_id)

    def job_output(self, job_id: str, name: str) -> bytes:
        return self.client.job_output(job_id, name)

    def audit_verify(self) -> dict:
        return self.client.audit_verify()

    def audit_entries(self, **filters: Any) -> list[dict]:
        return self.client.audit_entries(**filters)

    def audit_entry(self, seq: int) -> dict:
        return self.client.audit_entry(seq)

    def audit_export(self, out_dir: Path) -> dict:
        from sandbox.audit.log import AlreadyExists, EXPORT_FILES

        targets = [out_dir / name for name in EXPORT_FILES]
        taken = [str(t) for t in targets if t.exists()]
        if taken:
            raise AlreadyExists(f"export would overwrite {', '.join(taken)}", "export into an empty folder")
        entries = self.client.audit_export()
        checkpoints = self.client.audit_export_checkpoints()
        key = self.client.audit_key()
        out_dir.mkdir(parents=True, exist_ok=True)
        for target, data in zip(targets, (entries, checkpoints, key)):
            target.write_bytes(data)
        return {"entries": entries.count(b"\n"), "checkpoints": checkpoints.count(b"\n")}

    def disclosure_report(self) -> dict:
        return self.client.disclosure()
