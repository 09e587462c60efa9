"""The worker: takes queued jobs and runs each one sealed, with the broker as its only door.

One job's life, each step safe to repeat: prepare the runner's workspace, open the broker
socket in it, start, wait (heartbeating, and killing the job at once if it is cancelled or
its grant is revoked or expires), collect the capped outputs, finish the record, clean up.

Configuration (arguments win over the environment):

* ``pool_size`` / ``SANDBOX_POOL_SIZE``: pre-started single-use containers (Docker runner only).
  The library default is 0 (a one-off ``sandbox run`` must not start containers it never uses);
  the long-running ``sandbox worker`` and ``sandbox serve`` default to the runtime policy's
  ``pool_size`` (``policies/runtime.yaml``), which also sets the job limits and allowed imports.
* ``stale_after`` / ``SANDBOX_STALE_AFTER_S``: how old a running job's heartbeat must be before
  any worker, anywhere, closes it (default 30 s).
* ``SANDBOX_WORKER_IDLE_S``: how often an idle worker looks for queued jobs (default 0.05 s).

Recovery (``recover``, run when a worker starts): a worker is named
``worker-<host>-<pid>-<nonce>``. A running job whose worker was on *this* host and whose
process no longer exists is closed at once, without waiting for its heartbeat to go stale; a
job whose worker is on another host (or whose pid is alive, possibly reused) is closed only
once its heartbeat is older than ``stale_after``. Closed jobs are marked failed, release
nothing, and keep the charges the ledger holds for them. Then the runner sweeps containers
and folders that belong to no job still running.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

from runners import JobSpec, Limits, Runner, RunResult, get_runner

from sandbox import grants
from sandbox.actors import Actor
from sandbox.broker_socket import serve
from sandbox.errors import InvalidInput, PolicyRefused, SandboxError
from sandbox.home import Home
from sandbox.jobs.models import Job
from sandbox.jobs.service import STALE_AFTER
from sandbox.services import Services

log = logging.getLogger(__name__)

RUNNER_BASE = Path("/var/lib/sandbox-runner")
COMMAND = ["python3", "-I", "-m", "sandbox.sdk.harness", "/job/script.py"]
POLL_S = 0.25  # how often a running job is heartbeated and checked for cancel/revocation
# Imported by a pooled container while it waits, so a job does not pay for them (pandas alone
# takes 0.3-1 s); the harness then runs in that process. Never the harness module itself.
PRELOAD = ("numpy", "pandas", "matplotlib.pyplot", "RestrictedPython", "sandbox.sdk", "sandbox.sdk.guard",
           "sandbox.sdk._runtime", "sandbox.sdk.errors")

# Workers alive in this process: a job held by another name with this pid is an earlier
# incarnation's (e.g. a restarted container where the worker is pid 1 again).
_LIVE: set[str] = set()


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def pool_size_from_env(default: int = 0) -> int:
    raw = os.environ.get("SANDBOX_POOL_SIZE", "").strip()
    return int(raw) if raw else default


def default_runner(home: Home) -> Runner:
    """``$SANDBOX_RUNNER`` (docker or local) in a runner folder of this installation's own.

    Each home gets its own folder under ``RUNNER_BASE`` (unless ``$SANDBOX_RUNNER_ROOT`` names
    one), so a worker of one installation never sweeps another installation's containers.
    """
    digest = hashlib.sha256(str(home.root.resolve()).encode()).hexdigest()[:12]
    root = Path(os.environ.get("SANDBOX_RUNNER_ROOT") or RUNNER_BASE / digest)
    return get_runner(os.environ.get("SANDBOX_RUNNER", "docker"), root=root)


def worker_gone(name: str) -> bool:
    """True if ``name`` is a worker of this host whose process is known to be gone."""
    prefix = f"worker-{socket.gethostname()}-"
    if not name.startswith(prefix):
        return False  # another host: only its heartbeat can tell
    pid_text = name[len(prefix):].split("-")[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return name not in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False  # alive (or the pid was reused): wait for the heartbeat to go stale


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
            self.services.audit.append(
                actor=self.actor.name, role=self.actor.role, action="query.refused", outcome="policy_refused",
                objects={"job": self.job.id, "mock": self.job.mock}, grant_id=self.job.grant_id,
                details={"method": method, "reason": "dataset outside the job's grant"},
            )
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
                    # real answers are kept by the broker (stored answers); mock ones only here
                    **({"answer": answer} if self.job.mock else {}),
                })
            return answer
        if method == "preview":
            if self.job.mock:
                return broker.preview_mock(params)
            return broker.preview(self.actor, self.job.grant_id, params)
        if method == "budget":  # a mock job has no grant, so no budget
            rows = [] if self.job.mock else self.services.grants.get(self.job.grant_id)["budgets"]
            if "dataset" in params:
                return next((r for r in rows if r["dataset"] == params["dataset"]), None)
            return rows
        if method == "history":
            return [] if self.job.mock else broker.history(self.job.grant_id)
        if method == "datasets":
            return list(self.job.datasets)
        if method == "describe":
            return self.services.catalog.describe(params["dataset"])
        raise InvalidInput(f"unknown method {method!r}", "update the SDK in your image")


class Worker:
    """Runs queued jobs one after another; see the module docstring for configuration.

    ``command`` is what the container runs; it is the SDK harness (the script guard as second
    layer) except in tests that try the container layer on its own.
    """

    def __init__(self, services: Services, runner: Runner | None = None, image: str | None = None,
                 limits: Limits | None = None, *, pool_size: int | None = None,
                 stale_after: float | timedelta | None = None, idle_s: float | None = None,
                 command: Sequence[str] = COMMAND) -> None:
        self.services = services
        self.image = image or os.environ.get("SANDBOX_IMAGE", "sandbox-analysis:latest")
        self.limits = limits or services.runtime.limits
        self.pool_size = pool_size_from_env() if pool_size is None else pool_size
        self.runner = runner or default_runner(services.home)
        root = getattr(self.runner, "root", None)
        if root is not None and len(os.fsencode(Path(root) / "slots" / ("x" * 16) / "job" / "broker.sock")) > 107:
            raise InvalidInput(f"the runner folder {root} is too long for a job's socket path (107 bytes at most)",
                               "set SANDBOX_RUNNER_ROOT to a shorter folder, e.g. /var/lib/sandbox-runner")
        if stale_after is None:
            stale_after = _env_float("SANDBOX_STALE_AFTER_S", STALE_AFTER.total_seconds())
        self.stale_after = stale_after if isinstance(stale_after, timedelta) else timedelta(seconds=stale_after)
        self.idle_s = _env_float("SANDBOX_WORKER_IDLE_S", 0.05) if idle_s is None else idle_s
        self.command = list(command)
        self.name = f"worker-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        _LIVE.add(self.name)
        self._running: set[str] = set()
        self._swept = False

    def close(self) -> None:
        """Stop the pool (unused pre-started containers are removed)."""
        _LIVE.discard(self.name)
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_forever(self, idle_s: float | None = None, stop: threading.Event | None = None) -> None:
        """Recover jobs left running by a dead worker, then run queued jobs one after another."""
        stop = stop or threading.Event()
        idle = self.idle_s if idle_s is None else idle_s
        self.recover()
        while not stop.is_set():
            if not self.run_next():
                stop.wait(idle)

    def recover(self) -> list[str]:
        """Close jobs whose worker died (see the module docstring), then sweep their containers."""
        closed = self.services.jobs.recover(
            self.stale_after, lambda name: name != self.name and worker_gone(name))
        sweep = getattr(self.runner, "sweep", None)
        if sweep is not None and not self._swept:
            # Once, before this worker's pool exists: a sweep would take a container being
            # created for the pool (not yet listed as ready) for an orphan.
            sweep(alive=set(self.services.jobs.running_ids()) | self._running)
            self._swept = True
        self._start_pool()
        return closed

    def _start_pool(self) -> None:
        """Start the runner's pool once, after the first sweep (which would take a container
        being created for the pool for an orphan). Only for a Docker runner without one."""
        if self.pool_size <= 0 or getattr(self.runner, "pool", "absent") is not None:
            return
        from runners.pool import Pool

        self.runner.pool = Pool(self.runner, self.image, self.limits, self.pool_size,  # type: ignore[attr-defined]
                                preload=PRELOAD if self.command == COMMAND else ())

    def run_next(self, job_id: str | None = None) -> dict | None:
        self._start_pool()
        job = self.services.jobs.claim(self.name, job_id)
        if job is None:
            return None
        self._running.add(job.id)
        try:
            return self.execute(job)
        finally:
            self._running.discard(job.id)
            self.services.audit.checkpoint()

    def execute(self, job: Job) -> dict:
        spec = JobSpec(
            job_id=job.id, image=self.image, command=self.command,
            files={"script.py": job.script.encode("utf-8")},
            output_dir=self.services.home.jobs / job.id / "out", limits=self.limits,
            env={"SANDBOX_ALLOWED_IMPORTS": ",".join(self.services.runtime.allowed_imports),
                 **({"SANDBOX_MOCK": "1"} if job.mock else {})},
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
            stopped = self._watch(job, spec)
            result = self.runner.collect(spec)
            return self._finish(job, result, stopped, handler.queries)
        except SandboxError as err:
            return self.services.jobs.finish(job.id, "failed", reason=err.message, queries=handler.queries)
        except Exception:
            log.exception("job %s failed in the worker", job.id)
            return self.services.jobs.finish(
                job.id, "failed", reason="the worker failed while running the job; the operator finds why in the home's logs/sandbox.log",
                queries=handler.queries,
            )
        finally:
            if server is not None:
                server.close()
            self.runner.cleanup(spec)

    def _watch(self, job: Job, spec: JobSpec) -> tuple[str, str] | None:
        """Wait for the job; kill it at once if cancelled or if its grant stops being active.
        Returns None if it ended by itself, else (final state, reason)."""
        while True:
            state = self.runner.wait(spec, timeout=POLL_S)
            if state not in ("prepared", "running"):
                return None
            current = self.services.jobs.heartbeat(job.id)
            if current.cancel_requested:
                stopped = ("cancelled", current.reason or "cancelled by request while running")
            else:
                reason = self._grant_stopped(job)
                stopped = ("failed", f"stopped while running: {reason}") if reason else None
            if stopped:
                self.runner.kill(spec)
                self.runner.wait(spec, timeout=10)
                return stopped

    def _grant_stopped(self, job: Job) -> str | None:
        if job.mock:
            return None
        try:
            with self.services.db.transaction() as session:
                grants.active(session, job.grant_id)  # type: ignore[arg-type]
        except SandboxError as err:
            return err.message
        return None

    def _finish(self, job: Job, result: RunResult, stopped: tuple[str, str] | None, queries: list) -> dict:
        out = self.services.home.jobs / job.id / "out"
        outputs = [
            {"name": f.name, "size": f.size, "sha256": _sha256(out / f.name)} for f in result.outputs
        ]
        if stopped:
            state, reason = stopped
        else:
            state = "succeeded" if result.state == "succeeded" else "failed"
            reason = _explain(result)
            if state == "failed":  # a revoked grant often ends the script first (GrantInactive)
                inactive = self._grant_stopped(job)
                reason = f"stopped while running: {inactive}" if inactive else reason
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

