"""Fixtures for the job tests: a real home, the real analysis image, the real Docker engine.

One home per session (5000 synthetic farmers with a canary planted as one farmer's name, the
farm-credit policy, the three demo datasets); each test makes the grants it needs. After every
test the canary is looked for everywhere a job or a command could have put it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import docker
import pytest

from runners import Limits
from runners.docker_runner import DockerRunner
from sandbox.actors import Actor
from sandbox.demo_data import write_demo_csvs
from sandbox.home import Home
from sandbox.jobs.models import Job
from sandbox.jobs.worker import Worker
from sandbox.services import Services

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "farm-credit.yaml"
DATASETS = ("farmers", "utility_payments", "loan_defaults")
CANARY = "Qzwx Canarybird"  # one farmer's name in the raw rows: must never come out
OPERATOR = Actor("operator", "operator")
ANALYST = "bank-analyst"
ANALYST_ACTOR = Actor(ANALYST, "analyst")
SANDBOX = str(Path(sys.executable).with_name("sandbox"))
LIMITS = Limits(timeout_s=40)


@dataclass
class Env:
    root: Path
    home: Home
    services: Services
    image: str
    runner: DockerRunner
    worker: Worker
    texts: list[str] = field(default_factory=list)  # every CLI output, for the canary check

    # -- set-up helpers -------------------------------------------------------------------

    def grant(self, epsilon: float | None = 4.0, datasets: tuple[str, ...] = ("farmers",), days: int = 30) -> str:
        return self.services.grants.create(
            OPERATOR, analyst=ANALYST, datasets=list(datasets), epsilon=epsilon, days=days,
            purpose="testing jobs end to end", user_type="public_welfare")["id"]

    def submit(self, source: str, grant_id: str | None = None, name: str = "analysis.py",
               mock_datasets: list[str] | None = None) -> dict:
        kwargs = {"grant_id": grant_id} if grant_id else {"mock_datasets": mock_datasets or ["farmers"]}
        return self.services.jobs.submit(ANALYST_ACTOR, name, source, **kwargs)

    def run(self, source: str, grant_id: str | None = None, worker: Worker | None = None, **kw) -> Job:
        """Submit through the script check, run it with the worker, return the full record."""
        job = self.submit(source, grant_id, **kw)
        assert job["state"] == "queued", job
        (worker or self.worker).run_next(job["id"])
        return self.services.jobs.get(job["id"])

    def insert_queued(self, source: str, grant_id: str) -> str:
        """A queued job whose script never went through the check (a bypass of the first layer)."""
        import hashlib

        with self.services.db.transaction() as session:
            job = Job(id="j-" + uuid.uuid4().hex[:10], owner=ANALYST, grant_id=grant_id, mock=False,
                      datasets=["farmers"], state="queued", script_name="bypass.py", script=source,
                      script_sha256=hashlib.sha256(source.encode()).hexdigest(),
                      submitted_at=datetime.now(timezone.utc), violations=[], outputs=[], resources={},
                      queries=[])
            session.add(job)
            return job.id

    def cli_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
        env.update(SANDBOX_HOME=str(self.root), SANDBOX_USER=ANALYST, SANDBOX_ROLE="analyst",
                   SANDBOX_IMAGE=self.image, SANDBOX_RUNNER_ROOT=str(self.root.parent / "runner-cli"),
                   SANDBOX_POOL_SIZE="0")
        env.update(extra)
        return env

    def cli(self, *args: str, expect: int | None = 0, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        """Run the real ``sandbox`` command; its output is kept for the canary check."""
        done = subprocess.run([SANDBOX, *args], capture_output=True, text=True, timeout=timeout,
                              env=self.cli_env(**extra), cwd=self.root.parent)
        self.texts += [done.stdout, done.stderr]
        if expect is not None:
            assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
        return done

    # -- the canary -------------------------------------------------------------------------

    def everything(self) -> list[tuple[str, str]]:
        """Every place a value could have leaked to: (where, text)."""
        found: list[tuple[str, str]] = [("cli", t) for t in self.texts]
        with self.services.db.transaction() as session:
            for job in session.query(Job):
                found.append((f"job {job.id}", json.dumps(
                    [job.stdout, job.stderr, job.reason, job.violations, job.queries, job.outputs,
                     job.resources], ensure_ascii=False)))
        found.append(("audit", json.dumps(self.services.audit.entries(), ensure_ascii=False, default=str)))
        for path in list(self.home.jobs.rglob("*")) + list((self.root / "logs").rglob("*")):
            if path.is_file():
                found.append((str(path), path.read_bytes().decode("utf-8", "replace")))
        # Every row of every table (read through SQL: opening the SQLite file itself would drop
        # this process's locks on it and can corrupt the database).
        from sqlalchemy import select

        from sandbox.db import Base

        with self.services.db.transaction() as session:
            for table in Base.metadata.sorted_tables:
                rows = session.execute(select(table)).all()
                found.append((f"table {table.name}", json.dumps([list(r) for r in rows], default=str,
                                                                ensure_ascii=False)))
        return found

    def assert_no_canary(self) -> None:
        leaks = [where for where, text in self.everything() if CANARY in text]
        assert not leaks, f"the canary leaked into: {leaks}"


@pytest.fixture(scope="session")
def image() -> str:
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    from runners.image import ensure_image

    return ensure_image()


@pytest.fixture(scope="session")
def env(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("jobs")
    home = Home(base / "home")
    services = Services.init(home, OPERATOR)
    files = write_demo_csvs(base / "provider", n_farmers=5000, canary=CANARY)
    assert CANARY in files["farmers"].read_text()  # planted in the raw rows
    for name in DATASETS:
        services.catalog.add(files[name], name, POLICY, Actor("provider", "provider"))
    runner = DockerRunner(root=base / "runner")
    worker = Worker(services, runner=runner, image=image, limits=LIMITS, pool_size=0)
    e = Env(base / "home", home, services, image, runner, worker)
    yield e
    worker.close()
    runner.sweep()
    DockerRunner(root=base / "runner-cli").sweep()
    services.close()


@pytest.fixture(autouse=True)
def no_canary(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the home: the canary is nowhere."""
    yield
    if "env" in request.fixturenames:
        request.getfixturevalue("env").assert_no_canary()


def wait_until_final(services: Services, job_id: str, timeout: float) -> Job:
    """The job once it has ended (or as it is when ``timeout`` runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        job = services.jobs.get(job_id)
        if job.final or time.monotonic() > deadline:
            return job
        time.sleep(0.1)
