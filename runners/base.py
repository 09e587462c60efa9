"""The one small interface every execution backend implements.

Runners know nothing of the control plane: they get a job id, an image, a command, the files
to put in the job folder and limits; they hand back capped stdout/stderr and accepted outputs.
Every step is idempotent (after the OpenSAFELY job-runner executor) so a worker can repeat
any step after a crash: prepare -> (broker listens on Workspace.socket_path) -> start -> wait
-> collect -> cleanup; kill at any time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Protocol, Sequence

# Paths as the job sees them, identical for every runner.
JOB_DIR = "/job"  # read-only: the job's files and the broker socket
OUT_DIR = "/job/out"  # read-write: files the job wants handed back
SCRATCH_DIR = "/tmp"  # size-limited tmpfs
SOCKET_NAME = "broker.sock"

State = Literal["prepared", "running", "succeeded", "failed", "timed_out", "killed", "oom"]
FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out", "killed", "oom"})


@dataclass(frozen=True)
class Limits:
    """Resource limits of one job; limits live in policy files, these are only defaults."""

    memory_mb: int = 512
    cpus: float = 1.0
    pids: int = 64
    timeout_s: float = 60.0
    tmpfs_mb: int = 64
    stdout_bytes: int = 1_000_000  # each of stdout and stderr
    output_bytes: int = 10_000_000  # all output files together
    output_files: int = 32
    nofile: int = 64
    fsize_mb: int = 16  # largest file the job can write; also the per-output-file cap

    def __post_init__(self) -> None:
        if not 0 < self.tmpfs_mb < self.memory_mb:
            raise ValueError("tmpfs_mb must be positive and smaller than memory_mb (tmpfs is RAM)")
        if min(self.pids, self.nofile, self.fsize_mb, self.stdout_bytes, self.output_bytes) <= 0:
            raise ValueError("limits must be positive")
        if self.timeout_s <= 0 or self.cpus <= 0:
            raise ValueError("timeout_s and cpus must be positive")


@dataclass(frozen=True)
class JobSpec:
    """What to run. ``files`` (name -> content) are written into /job read-only, e.g. the script;
    accepted outputs are copied into ``output_dir`` on the host by ``collect``."""

    job_id: str
    image: str
    command: Sequence[str]
    files: Mapping[str, bytes]
    output_dir: Path
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict)  # extra, non-secret variables


@dataclass(frozen=True)
class Workspace:
    """Host side of a prepared job. The broker must listen on ``socket_path`` before ``start``;
    the runner then lets only the job's uid connect to it."""

    job_dir: Path  # seen as /job
    out_dir: Path  # seen as /job/out
    socket_path: Path  # seen as /job/broker.sock
    uid: int


@dataclass(frozen=True)
class OutputFile:
    name: str
    size: int


@dataclass
class RunResult:
    state: State
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    image_digest: str | None
    isolation: str
    outputs: list[OutputFile] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # output name -> reason


class Runner(Protocol):
    name: str
    isolation: Literal["strong", "weak"]

    def prepare(self, spec: JobSpec) -> Workspace:
        """Reserve a uid and container, write the job's files. Returns where the socket goes."""

    def start(self, spec: JobSpec) -> None:
        """Start the command; the wall-clock limit counts from here."""

    def wait(self, spec: JobSpec, timeout: float | None = None) -> State:
        """Block until the job ends (killing it at its time limit) or ``timeout`` passes."""

    def collect(self, spec: JobSpec) -> RunResult:
        """Capped stdout/stderr and the accepted output files, copied to ``spec.output_dir``."""

    def kill(self, spec: JobSpec) -> None:
        """Stop the job now (revoked grant, cancelled job); state becomes ``killed``."""

    def cleanup(self, spec: JobSpec) -> None:
        """Remove the container and job folder and release the uid."""


def job_env(spec_env: dict[str, str] | None = None) -> dict[str, str]:
    """The job's whole environment besides the image's PATH: nothing secret, ever."""
    env = {
        "HOME": SCRATCH_DIR,
        "TMPDIR": SCRATCH_DIR,
        "MPLCONFIGDIR": SCRATCH_DIR,
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "SANDBOX_SOCKET": f"{JOB_DIR}/{SOCKET_NAME}",
        "SANDBOX_OUTPUT": OUT_DIR,
    }
    env.update(spec_env or {})
    return env


class RunnerError(RuntimeError):
    """A runner cannot do what was asked; the message says what to do."""


def wait_budget(deadline: float, timeout: float | None) -> float:
    """Seconds one ``wait`` may block: up to ``timeout``, never past the job's time limit
    (``deadline``, monotonic), and at least a moment so a job already past it is still reaped."""
    remaining = deadline - time.monotonic()
    return max(remaining if timeout is None else min(timeout, remaining), 0.01)


def require_ended(spec: JobSpec, state: str) -> None:
    """``collect`` only after the job has ended: its output is not final before."""
    if state not in FINAL_STATES:
        raise RunnerError(f"job {spec.job_id} has not ended (state {state}): wait for it first")
