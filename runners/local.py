"""Local runner for machines with no Docker daemon: bubblewrap around the host's Python.

Isolation is WEAK and reported as such (``isolation = "weak"``): the job shares the host's
kernel and Python installation, has no memory/pids cgroup (only rlimits: address space,
processes of its uid, file size, open files, CPU seconds, no core dumps) and no seccomp filter.
It does get: its own uid (dropped before bwrap starts), every namespace unshared (no network
but loopback, own pid/ipc/uts), read-only binds of only the Python install and the job folder,
a size-limited tmpfs /tmp, no capabilities, a wall-clock timeout. For development only.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, IO

from . import outputs, workspace
from .base import (
    FINAL_STATES, JOB_DIR, OUT_DIR, SCRATCH_DIR, JobSpec, Limits, RunnerError, RunResult, State, Workspace,
    job_env, require_ended, wait_budget,
)
from .image import copy_sdk
from .uids import UidPool

log = logging.getLogger(__name__)

SDK_DIR = "/opt/sdk"  # the analyst SDK, on PYTHONPATH


class _Reader(threading.Thread):
    """Drains a pipe, keeping the first ``cap`` bytes so the job never blocks on a full pipe."""

    def __init__(self, pipe: IO[bytes], cap: int) -> None:
        super().__init__(daemon=True)
        self.pipe, self.cap, self.data, self.truncated = pipe, cap, bytearray(), False

    def run(self) -> None:
        while chunk := self.pipe.read1(65536):
            room = self.cap - len(self.data)
            self.data += chunk[:room]
            self.truncated |= len(chunk) > room
        self.pipe.close()


@dataclass
class _Job:
    spec: JobSpec
    base: Path
    ws: Workspace
    proc: subprocess.Popen | None = None
    started: float = 0.0
    ended: float = 0.0
    state: State = "prepared"
    killed: bool = False
    timed_out: bool = False
    readers: list[_Reader] = field(default_factory=list)
    result: RunResult | None = None


def _python_prefixes(python: str) -> list[str]:
    """The folders the job needs of ``python`` (venv and base install), checked reachable by
    job uids when running as root: a job never runs as root, even a cap-less one."""
    out = subprocess.run([python, "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                         check=True, capture_output=True, text=True).stdout.split()
    prefixes = sorted({str(Path(p).resolve()) for p in out} | set(out))
    for prefix in prefixes:
        _check_reachable(Path(prefix), f"{python} (pass python=/usr/bin/python3 or one under /opt)")
    return prefixes


def _check_reachable(path: Path, what: str) -> None:
    """bwrap runs as the job's uid, so it can only bind folders that uid can reach."""
    if os.getuid() != 0:
        return
    for folder in [path, *path.parents]:
        if not folder.stat().st_mode & 0o001:
            raise RunnerError(f"job uids cannot enter {folder}, so they cannot use {what}")


def _limit_and_drop(limits: Limits, uid: int) -> Callable[[], None]:
    root = os.getuid() == 0

    def preexec() -> None:
        mb = 2**20
        rlimits = [
            (resource.RLIMIT_AS, limits.memory_mb * mb),
            (resource.RLIMIT_FSIZE, limits.fsize_mb * mb),
            (resource.RLIMIT_NOFILE, limits.nofile),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_CPU, int(limits.timeout_s) + 1),
        ]
        if root:  # RLIMIT_NPROC counts every process of the uid: only meaningful for a job's own uid
            rlimits.append((resource.RLIMIT_NPROC, limits.pids))
        for res, value in rlimits:
            resource.setrlimit(res, (value, value))
        if root:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return preexec


class LocalRunner:
    name = "local"
    isolation = "weak"

    def __init__(self, root: Path | None = None, python: str = sys.executable) -> None:
        self.bwrap = shutil.which("bwrap")
        if not self.bwrap:
            raise RunnerError("the local runner needs bubblewrap: apt-get install bubblewrap "
                              "(or use the docker runner)")
        self.root = root or Path(tempfile.gettempdir()) / "sandbox-local-runner"
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        _check_reachable(self.root, "the runner's root folder")
        self.uids = UidPool(self.root / "uids")
        self.prefixes = _python_prefixes(python)
        self.python_bin = [str(Path(p) / "bin") for p in self.prefixes]
        self._sdk = self.root / "sdk"
        shutil.rmtree(self._sdk, ignore_errors=True)
        copy_sdk(self._sdk)
        self._jobs: dict[str, _Job] = {}
        log.warning("local runner: WEAK isolation (bubblewrap, rlimits, host Python); not for real data")

    def prepare(self, spec: JobSpec) -> Workspace:
        if spec.job_id in self._jobs:
            return self._jobs[spec.job_id].ws
        base = self.root / "jobs" / workspace.safe_key(spec.job_id)
        workspace.destroy(base)
        uid = self.uids.acquire()
        ws = workspace.create(base, uid, spec.limits)
        workspace.write_files(ws, spec.files)
        self._jobs[spec.job_id] = _Job(spec=spec, base=base, ws=ws)
        return ws

    def start(self, spec: JobSpec) -> None:
        job = self._job(spec)
        if job.state != "prepared":
            return
        workspace.grant_socket(job.ws)
        args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--hostname", "sandbox", "--clearenv",
                "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
                "--proc", "/proc", "--dev", "/dev",
                "--size", str(spec.limits.tmpfs_mb * 2**20), "--tmpfs", SCRATCH_DIR]
        for prefix in self.prefixes:
            args += ["--ro-bind", prefix, prefix]
        args += ["--ro-bind", str(self._sdk), SDK_DIR, "--ro-bind", str(job.ws.job_dir), JOB_DIR,
                 "--bind", str(job.ws.out_dir), OUT_DIR, "--chdir", JOB_DIR]
        env = {**job_env(dict(spec.env)), "PYTHONPATH": SDK_DIR,
               "PATH": ":".join([*self.python_bin, "/usr/bin", "/bin"])}
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--", *spec.command]
        job.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_limit_and_drop(spec.limits, job.ws.uid), start_new_session=True, env={},
        )
        job.started = time.monotonic()
        job.state = "running"
        job.readers = [_Reader(job.proc.stdout, spec.limits.stdout_bytes),
                       _Reader(job.proc.stderr, spec.limits.stdout_bytes)]
        for reader in job.readers:
            reader.start()

    def wait(self, spec: JobSpec, timeout: float | None = None) -> State:
        job = self._job(spec)
        if job.state in FINAL_STATES or job.proc is None:
            return job.state
        deadline = job.started + spec.limits.timeout_s
        try:
            job.proc.wait(timeout=wait_budget(deadline, timeout))
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
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
        out, err = job.readers if job.readers else (None, None)
        accepted, refused = outputs.collect(job.ws.out_dir, spec.output_dir, spec.limits)
        job.result = RunResult(
            state=job.state, exit_code=job.proc.returncode if job.proc else None,
            stdout=out.data.decode("utf-8", "replace") if out else "",
            stderr=err.data.decode("utf-8", "replace") if err else "",
            stdout_truncated=bool(out and out.truncated), stderr_truncated=bool(err and err.truncated),
            duration_s=job.ended - job.started if job.proc else 0.0, image_digest=None,
            isolation=self.isolation, outputs=accepted, refused=refused,
        )
        return job.result

    def kill(self, spec: JobSpec) -> None:
        job = self._jobs.get(spec.job_id)
        if job is None or job.state in FINAL_STATES:
            return
        job.killed = True
        if job.proc is None:
            job.state = "killed"
            return
        self._stop(job)
        self._finish(job)

    def cleanup(self, spec: JobSpec) -> None:
        job = self._jobs.pop(spec.job_id, None)
        if job is not None:
            if job.proc and job.proc.poll() is None:
                self._stop(job)
            workspace.destroy(job.base)
            self.uids.release(job.ws.uid)
        else:
            workspace.destroy(self.root / "jobs" / workspace.safe_key(spec.job_id))

    def _job(self, spec: JobSpec) -> _Job:
        job = self._jobs.get(spec.job_id)
        if job is None:
            raise RunnerError(f"job {spec.job_id} is not prepared on this runner: call prepare first")
        return job

    def _stop(self, job: _Job) -> None:
        assert job.proc is not None
        try:
            os.killpg(job.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        job.proc.wait()

    def _finish(self, job: _Job) -> None:
        assert job.proc is not None
        job.ended = job.ended or time.monotonic()
        for reader in job.readers:
            reader.join(timeout=10)
        code = job.proc.returncode
        if job.killed:
            job.state = "killed"
        elif job.timed_out or code == -signal.SIGXCPU:
            job.state = "timed_out"
        else:
            job.state = "succeeded" if code == 0 else "failed"
