"""Docker runner: each job in its own hardened, single-use container.

Containers are started either cold (created in ``prepare``, started in ``start``) or taken from
a pool of pre-started containers (see ``pool.py``) whose tiny waiter blocks on a FIFO in /job
until ``start`` writes the job's command into it; either way a container serves one job and is
removed at ``cleanup``. Every container carries the label ``sandbox.runner=docker`` and its
runner root (``sandbox.root``) so that ``sweep`` can remove the ones a crashed worker of the
same root left behind, and never those of another runner on the same engine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.types import LogConfig, Mount, Ulimit

from . import outputs, workspace
from .base import (
    FINAL_STATES, JOB_DIR, OUT_DIR, SCRATCH_DIR, JobSpec, Limits, RunnerError, RunResult, State,
    Workspace, job_env, require_ended, wait_budget,
)
from .uids import UidPool

log = logging.getLogger(__name__)

LABEL = "sandbox.runner"
JOB_LABEL = "sandbox.job"
SLOT_LABEL = "sandbox.slot"
ROOT_LABEL = "sandbox.root"  # the runner root that made the container: sweep touches only its own
START_FIFO = ".start"  # in /job: the pool's waiter reads the job's command from it
DEFAULT_ROOT = Path(os.environ.get("SANDBOX_RUNNER_ROOT", "/var/lib/sandbox-runner"))

# Runs in a pre-started container: block until the runner writes {"argv", "env"}, then become
# the command (exec). With ``preload`` (opt-in), first import those modules, to take imports off
# the job's critical path, and run a ``python3 [-I] -m module args...`` command in this process
# (keeping what was imported) instead of exec'ing it. Note: the FIFO is opened only once the
# imports are done, so a slot counts as ready (``Pool.wait_ready``) a little before it is.
def waiter(preload: Sequence[str] = ()) -> str:
    if not preload:
        return (
            "import json, os\n"
            f"with open('{JOB_DIR}/{START_FIFO}', 'rb') as f:\n"
            "    job = json.loads(f.read())\n"
            "os.execvpe(job['argv'][0], job['argv'], {**os.environ, **job['env']})\n"
        )
    return (
        "import json, os, runpy, sys\n"
        f"for name in {list(preload)!r}:\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except Exception:\n"
        "        pass\n"
        f"with open('{JOB_DIR}/{START_FIFO}', 'rb') as f:\n"
        "    job = json.loads(f.read())\n"
        "argv = job['argv']\n"
        "rest = argv[2:] if argv[1:2] == ['-I'] else argv[1:]\n"
        "if os.path.basename(argv[0]).startswith('python') and rest[:1] == ['-m'] and len(rest) > 1:\n"
        "    os.environ.update(job['env'])\n"
        "    sys.argv = rest[1:]\n"
        "    runpy.run_module(rest[1], run_name='__main__', alter_sys=True)\n"
        "    sys.exit(0)\n"
        "os.execvpe(argv[0], argv, {**os.environ, **job['env']})\n"
    )


WAITER = waiter()


def container_config(image: str, command: Sequence[str], ws: Workspace, limits: Limits,
                     env: dict[str, str], labels: dict[str, str]) -> dict:
    """Keyword arguments of ``containers.create``: every hardening option in one place."""
    mem = f"{limits.memory_mb}m"
    log_kb = 2 * limits.stdout_bytes // 1024 + 1024  # disk bound only: output is read by attach
    return dict(
        image=image,
        command=list(command),
        user=f"{ws.uid}:{ws.uid}",
        working_dir=JOB_DIR,
        environment=env,
        labels=labels,
        network_mode="none",
        ipc_mode="none",
        read_only=True,
        tmpfs={SCRATCH_DIR: f"rw,nosuid,nodev,noexec,size={limits.tmpfs_mb}m,mode=1777"},
        mounts=[
            Mount(JOB_DIR, str(ws.job_dir), type="bind", read_only=True),
            Mount(OUT_DIR, str(ws.out_dir), type="bind", read_only=False),
        ],
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=limits.pids,
        mem_limit=mem,
        memswap_limit=mem,
        nano_cpus=int(limits.cpus * 1e9),
        ulimits=[
            Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
            Ulimit(name="nproc", soft=limits.pids, hard=limits.pids),
            Ulimit(name="fsize", soft=limits.fsize_mb * 2**20, hard=limits.fsize_mb * 2**20),
            Ulimit(name="core", soft=0, hard=0),
        ],
        log_config=LogConfig(type="json-file", config={"max-size": f"{log_kb}k", "max-file": "1"}),
        init=True,
        hostname="sandbox",
        stdin_open=False,
        tty=False,
        detach=True,
    )


class _Capture(threading.Thread):
    """Reads a container's stdout and stderr from an attach stream opened before it starts,
    keeping the first ``cap`` bytes of each and draining the rest so the job never blocks."""

    def __init__(self, client: docker.DockerClient, container_id: str, cap: int) -> None:
        super().__init__(daemon=True)
        self.stream = client.api.attach(container_id, stdout=True, stderr=True, stream=True, logs=False,
                                        demux=True)
        self.cap = cap
        self.data = (bytearray(), bytearray())
        self.truncated = [False, False]

    def run(self) -> None:
        try:
            for chunks in self.stream:
                for i, chunk in enumerate(chunks):
                    if chunk:
                        room = self.cap - len(self.data[i])
                        self.data[i].extend(chunk[:room])
                        self.truncated[i] = self.truncated[i] or len(chunk) > room
        except (docker.errors.APIError, requests.exceptions.RequestException, OSError) as exc:
            log.warning("output capture stopped: %s", exc)

    def text(self, i: int) -> str:
        return self.data[i].decode("utf-8", "replace")


@dataclass
class _Job:
    spec: JobSpec
    base: Path
    ws: Workspace
    container: Container
    image_digest: str
    pooled: bool
    started: float | None = None
    deadline: float | None = None
    ended: float | None = None
    state: State = "prepared"
    exit_code: int | None = None
    killed: bool = False
    timed_out: bool = False
    capture: _Capture | None = None
    result: RunResult | None = None


class DockerRunner:
    """The default runner; ``pool_size > 0`` keeps that many containers pre-started for jobs
    whose image and container limits equal ``pool_image`` and ``pool_limits``."""

    name = "docker"
    isolation = "strong"

    def __init__(self, root: Path = DEFAULT_ROOT, pool_size: int = 0, pool_image: str | None = None,
                 pool_limits: Limits = Limits(), client: docker.DockerClient | None = None,
                 pool_preload: Sequence[str] = ()) -> None:
        self.client = client or docker.from_env()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o711)
        self.uids = UidPool(root / "uids")
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self.pool = None
        if pool_size > 0:
            from .pool import Pool

            if not pool_image:
                raise RunnerError("a pool needs pool_image")
            self.pool = Pool(self, pool_image, pool_limits, pool_size, preload=pool_preload)

    # -- the Runner interface ---------------------------------------------------------------

    def prepare(self, spec: JobSpec) -> Workspace:
        with self._lock:
            if spec.job_id in self._jobs:
                return self._jobs[spec.job_id].ws
        job = self.pool.take(spec) if self.pool else None
        if job is None:
            job = self._create_cold(spec)
        workspace.write_files(job.ws, spec.files)
        with self._lock:
            self._jobs[spec.job_id] = job
        return job.ws

    def start(self, spec: JobSpec) -> None:
        job = self._job(spec)
        if job.state != "prepared":
            return
        workspace.grant_socket(job.ws)
        job.capture = _Capture(self.client, job.container.id, spec.limits.stdout_bytes)
        job.capture.start()
        if job.pooled:
            self._trigger(job)
        else:
            job.container.start()
        job.started = time.monotonic()
        job.deadline = job.started + spec.limits.timeout_s
        job.state = "running"

    def wait(self, spec: JobSpec, timeout: float | None = None) -> State:
        job = self._job(spec)
        if job.state in FINAL_STATES or job.state == "prepared":
            return job.state
        assert job.deadline is not None
        try:
            job.container.wait(timeout=wait_budget(job.deadline, timeout))
        except requests.exceptions.RequestException:
            if time.monotonic() < job.deadline:
                return "running"
            job.timed_out = True
            self._stop(job)
        self._finish(job)
        return job.state

    def collect(self, spec: JobSpec) -> RunResult:
        job = self._job(spec)
        if job.result is not None:
            return job.result
        require_ended(spec, job.state)
        cap = job.capture
        accepted, refused = outputs.collect(job.ws.out_dir, spec.output_dir, spec.limits)
        job.result = RunResult(
            state=job.state, exit_code=job.exit_code, stdout=cap.text(0) if cap else "",
            stderr=cap.text(1) if cap else "", stdout_truncated=bool(cap and cap.truncated[0]),
            stderr_truncated=bool(cap and cap.truncated[1]),
            duration_s=(job.ended or 0.0) - (job.started or 0.0), image_digest=job.image_digest,
            isolation=self.isolation, outputs=accepted, refused=refused,
        )
        return job.result

    def kill(self, spec: JobSpec) -> None:
        with self._lock:
            job = self._jobs.get(spec.job_id)
        if job is None or job.state in FINAL_STATES:
            return
        job.killed = True
        if job.state == "prepared":
            job.state = "killed"
            return
        self._stop(job)
        self._finish(job)

    def cleanup(self, spec: JobSpec) -> None:
        with self._lock:
            job = self._jobs.pop(spec.job_id, None)
        if job is not None:
            self._remove(job.container.id)
            workspace.destroy(job.base)
            self.uids.release(job.ws.uid)
            return
        # Unknown here (e.g. after a restart): remove whatever carries the job's label.
        for c in self.labelled(f"{JOB_LABEL}={spec.job_id}"):
            self._remove(c["Id"])
        workspace.destroy(self.root / "jobs" / workspace.safe_key(spec.job_id))

    # -- housekeeping -------------------------------------------------------------------------

    def sweep(self, alive: Collection[str] = ()) -> list[str]:
        """Remove containers and folders of jobs neither known here nor in ``alive`` (job ids):
        call it when a worker starts, to clear what a crashed worker left behind."""
        with self._lock:
            keep_jobs = set(alive) | set(self._jobs)
            keep_ids = {j.container.id for j in self._jobs.values()}
        keep_ids |= self.pool.container_ids() if self.pool else set()
        removed = []
        for c in self.labelled(f"{ROOT_LABEL}={self.root}"):
            if c["Id"] not in keep_ids and (c.get("Labels") or {}).get(JOB_LABEL) not in keep_jobs:
                self._remove(c["Id"])
                removed.append(c["Id"])
        keep_dirs = {workspace.safe_key(j) for j in keep_jobs}
        keep_dirs |= {j.base.name for j in self._jobs.values()}
        keep_dirs |= self.pool.slot_names() if self.pool else set()
        for parent in (self.root / "jobs", self.root / "slots"):
            for base in parent.glob("*") if parent.is_dir() else ():
                if base.name not in keep_dirs:
                    workspace.destroy(base)
        return removed

    def close(self) -> None:
        """Stop the pool and remove its unused containers (jobs are left to their owners)."""
        if self.pool:
            self.pool.close()

    # -- internals ----------------------------------------------------------------------------

    def _job(self, spec: JobSpec) -> _Job:
        with self._lock:
            job = self._jobs.get(spec.job_id)
        if job is None:
            raise RunnerError(f"job {spec.job_id} is not prepared on this runner: call prepare first")
        return job

    def labelled(self, label: str) -> list[dict]:
        """Containers (running or not) carrying ``label`` (``key`` or ``key=value``)."""
        return self.client.api.containers(all=True, filters={"label": label})

    def image_digest(self, image: str) -> str:
        try:
            return self.client.images.get(image).id
        except docker.errors.ImageNotFound:
            raise RunnerError(f"image {image} not found: build it with `python -m runners.image`") from None

    def new_container(self, base: Path, image: str, command: Sequence[str], limits: Limits,
                      env: dict[str, str], labels: dict[str, str]) -> tuple[Workspace, Container]:
        """A uid, a job folder and a created (not started) hardened container for them."""
        uid = self.uids.acquire()
        try:
            ws = workspace.create(base, uid, limits)
            config = container_config(image, command, ws, limits, env,
                                      {LABEL: "docker", ROOT_LABEL: str(self.root), **labels})
            return ws, self.client.containers.create(**config)
        except BaseException:
            workspace.destroy(base)
            self.uids.release(uid)
            raise

    def _create_cold(self, spec: JobSpec) -> _Job:
        digest = self.image_digest(spec.image)
        base = self.root / "jobs" / workspace.safe_key(spec.job_id)
        # A container left by an earlier attempt of this job is not trusted: start afresh.
        for c in self.labelled(f"{JOB_LABEL}={spec.job_id}"):
            self._remove(c["Id"])
        workspace.destroy(base)
        ws, container = self.new_container(
            base, digest, spec.command, spec.limits, job_env(dict(spec.env)), {JOB_LABEL: spec.job_id})
        return _Job(spec=spec, base=base, ws=ws, container=container, image_digest=digest, pooled=False)

    def _trigger(self, job: _Job) -> None:
        """Hand the command to a pooled container's waiter through the FIFO in its /job."""
        payload = json.dumps({"argv": list(job.spec.command), "env": job_env(dict(job.spec.env))}).encode()
        fifo = job.ws.job_dir / START_FIFO
        give_up = time.monotonic() + 30
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError:  # ENXIO: the waiter has not opened it yet
                if time.monotonic() > give_up:
                    raise RunnerError(f"pooled container for {job.spec.job_id} never became ready") from None
                time.sleep(0.002)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)

    def _stop(self, job: _Job) -> None:
        try:
            job.container.kill()
        except docker.errors.APIError:
            pass  # already stopped
        try:
            job.container.wait(timeout=30)
        except (requests.exceptions.RequestException, docker.errors.APIError):
            log.warning("container of job %s did not stop after kill", job.spec.job_id)

    def _finish(self, job: _Job) -> None:
        job.ended = job.ended or time.monotonic()
        if job.capture:
            job.capture.join(timeout=10)
        job.container.reload()
        st = job.container.attrs["State"]
        job.exit_code = st.get("ExitCode")
        if job.killed:
            job.state = "killed"
        elif job.timed_out:
            job.state = "timed_out"
        elif st.get("OOMKilled"):
            job.state = "oom"
        else:
            job.state = "succeeded" if job.exit_code == 0 else "failed"

    def _remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise
