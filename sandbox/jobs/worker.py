"""The worker: takes queued jobs and runs each one sealed, with the broker as its only door.

One job's life, each step safe to repeat: prepare the runner's workspace, open the broker
socket in it, start, wait (heartbeating, and killing the job at once if it is cancelled or
its grant is revoked or expires), collect the capped outputs, finish the record, clean up.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from runners import JobSpec, Limits, Runner, RunResult, get_runner

from sandbox import grants
from sandbox.actors import Actor
from sandbox.broker_socket import serve
from sandbox.errors import InvalidInput, PolicyRefused, SandboxError
from sandbox.jobs.models import Job
from sandbox.services import Services

log = logging.getLogger(__name__)

COMMAND = ["python3", "-I", "-m", "sandbox.sdk.harness", "/job/script.py"]
POLL_S = 0.25


def default_runner() -> Runner:
    return get_runner(os.environ.get("SANDBOX_RUNNER", "docker"))


class JobHandler:
    """Answers the SDK's requests for one job: the job's grant (or mock data) and nothing else."""

    def __init__(self, services: Services, job: Job) -> None:
        self.services = services
        self.job = job
        self.actor = Actor(job.owner, "analyst")
        self.queries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, method: str, params: dict) -> Any:
        if method in ("query", "preview", "describe") and params.get("dataset") not in self.job.datasets:
            raise PolicyRefused(
                f"this job may only use: {', '.join(self.job.datasets)}",
                "use one of those datasets, or apply for access to the other one",
            )
        broker = self.services.broker
        if method == "query":
            if self.job.mock:
                answer = broker.ask_mock(params)
            else:
                answer = broker.ask(self.actor, self.job.grant_id, params, job_id=self.job.id)
            with self._lock:
                self.queries.append({
                    "dataset": params["dataset"], "query": params,
                    "epsilon": answer.get("epsilon_charged", 0.0), "cached": answer.get("cached", False),
                })
            return answer
        if method == "preview":
            if self.job.mock:
                raise InvalidInput("a mock job spends no budget; there is nothing to preview",
                                   "submit the script with a grant to preview real costs")
            return broker.preview(self.actor, self.job.grant_id, params)
        if method == "budget":
            return None if self.job.mock else self.services.grants.get(self.job.grant_id)["budgets"]
        if method == "history":
            return [] if self.job.mock else broker.history(self.job.grant_id)
        if method == "datasets":
            return list(self.job.datasets)
        if method == "describe":
            return self.services.catalog.describe(params["dataset"])
        raise InvalidInput(f"unknown method {method!r}", "update the SDK in your image")


class Worker:
    def __init__(self, services: Services, runner: Runner | None = None, image: str | None = None,
                 limits: Limits | None = None) -> None:
        self.services = services
        self.runner = runner or default_runner()
        self.image = image or os.environ.get("SANDBOX_IMAGE", "sandbox-analysis:latest")
        self.limits = limits or Limits()
        self.name = f"worker-{socket.gethostname()}-{os.getpid()}"

    def run_forever(self, idle_s: float = 0.5, stop: threading.Event | None = None) -> None:
        """Recover jobs left running by a dead worker, then run queued jobs one after another."""
        stop = stop or threading.Event()
        self.recover()
        while not stop.is_set():
            if not self.run_next():
                stop.wait(idle_s)

    def recover(self) -> list[str]:
        closed = self.services.jobs.recover()
        sweep = getattr(self.runner, "sweep", None)
        if sweep is not None:
            sweep()
        return closed

    def run_next(self, job_id: str | None = None) -> dict | None:
        job = self.services.jobs.claim(self.name, job_id)
        if job is None:
            return None
        try:
            return self.execute(job)
        finally:
            self.services.audit.checkpoint()

    def execute(self, job: Job) -> dict:
        spec = JobSpec(
            job_id=job.id, image=self.image, command=COMMAND,
            files={"script.py": job.script.encode("utf-8")},
            output_dir=self.services.home.jobs / job.id / "out", limits=self.limits,
            env={"SANDBOX_MOCK": "1"} if job.mock else {},
        )
        handler = JobHandler(self.services, job)
        server = None
        try:
            workspace = self.runner.prepare(spec)
            server = serve(workspace.socket_path, handler)
            self.services.jobs.started(
                job.id, runner=self.runner.name, isolation=self.runner.isolation,
                image_digest=_digest(self.runner, self.image),
            )
            self.runner.start(spec)
            stop_reason = self._watch(job, spec)
            result = self.runner.collect(spec)
            return self._finish(job, result, stop_reason, handler.queries)
        except SandboxError as err:
            return self.services.jobs.finish(job.id, "failed", reason=err.message, queries=handler.queries)
        except Exception:
            log.exception("job %s failed in the worker", job.id)
            return self.services.jobs.finish(
                job.id, "failed", reason="the worker failed while running the job; the operator has the log",
                queries=handler.queries,
            )
        finally:
            if server is not None:
                server.close()
            self.runner.cleanup(spec)

    def _watch(self, job: Job, spec: JobSpec) -> str | None:
        """Wait for the job; kill it at once if cancelled or if its grant stops being active."""
        while True:
            state = self.runner.wait(spec, timeout=POLL_S)
            if state not in ("prepared", "running"):
                return None
            current = self.services.jobs.heartbeat(job.id)
            reason = "cancelled by request" if current.cancel_requested else self._grant_stopped(job)
            if reason:
                self.runner.kill(spec)
                self.runner.wait(spec, timeout=10)
                return reason

    def _grant_stopped(self, job: Job) -> str | None:
        if job.mock:
            return None
        try:
            with self.services.db.transaction() as session:
                grants.active(session, job.grant_id)  # type: ignore[arg-type]
        except SandboxError as err:
            return err.message
        return None

    def _finish(self, job: Job, result: RunResult, stop_reason: str | None, queries: list) -> dict:
        out = self.services.home.jobs / job.id / "out"
        outputs = [
            {"name": f.name, "size": f.size, "sha256": _sha256(out / f.name)} for f in result.outputs
        ]
        if stop_reason:
            state = "cancelled" if stop_reason.startswith("cancelled") else "failed"
        else:
            state = "succeeded" if result.state == "succeeded" else "failed"
        reason = stop_reason or _explain(result)
        return self.services.jobs.finish(
            job.id, state, reason=reason, exit_code=result.exit_code,
            stdout=result.stdout, stderr=result.stderr, outputs=outputs, queries=queries,
            resources={
                "duration_s": round(result.duration_s, 3), "runner_state": result.state,
                "stdout_truncated": result.stdout_truncated, "stderr_truncated": result.stderr_truncated,
                "refused_outputs": result.refused, "limits": vars(self.limits),
            },
        )


def _explain(result: RunResult) -> str | None:
    return {
        "timed_out": "the job ran past its time limit and was stopped",
        "oom": "the job used more memory than its limit and was stopped",
        "killed": "the job was stopped",
        "failed": f"the script exited with code {result.exit_code}; see its stderr",
    }.get(result.state)


def _digest(runner: Runner, image: str) -> str | None:
    image_digest = getattr(runner, "image_digest", None)
    return image_digest(image) if image_digest else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_until_final(services: Services, job_id: str, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = services.jobs.get(job_id)
        if job.final or time.monotonic() > deadline:
            return job
        time.sleep(POLL_S)
