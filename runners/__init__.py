"""Execution backends behind one small interface (see ``base.py``); they know nothing of the
control plane. ``get_runner("docker")`` is the default; ``get_runner("local")`` needs no Docker
daemon but isolates weakly (bubblewrap on the host's Python) and says so."""

from __future__ import annotations

from typing import Any

from .base import (
    JOB_DIR, OUT_DIR, SCRATCH_DIR, SOCKET_NAME, JobSpec, Limits, OutputFile, Runner, RunnerError,
    RunResult, State, Workspace,
)

__all__ = [
    "JOB_DIR", "OUT_DIR", "SCRATCH_DIR", "SOCKET_NAME", "JobSpec", "Limits", "OutputFile", "Runner",
    "RunnerError", "RunResult", "State", "Workspace", "get_runner",
]


def get_runner(name: str = "docker", **options: Any) -> Runner:
    """The runner called ``name``; ``options`` go to its constructor (e.g. ``pool_size``)."""
    if name == "docker":
        from .docker_runner import DockerRunner

        return DockerRunner(**options)
    if name == "local":
        from .local import LocalRunner

        return LocalRunner(**options)
    raise RunnerError(f"unknown runner {name!r}: use 'docker' or 'local'")
