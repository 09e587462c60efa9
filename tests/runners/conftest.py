"""Fixtures for the runner tests: the real image, real Docker, a real broker socket."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator

import docker
import pytest

from runners import JobSpec, Limits, RunResult
from runners.docker_runner import DockerRunner
from runners.image import ensure_image


@pytest.fixture(scope="session")
def image() -> str:
    """The analysis image, built once (seconds when it is already up to date)."""
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    return ensure_image()


@pytest.fixture
def runner(image: str, tmp_path: Path) -> Iterator[DockerRunner]:
    r = DockerRunner(root=tmp_path / "runner")
    yield r
    r.sweep()
    r.close()


class EchoBroker:
    """A stand-in broker: echoes each line back on a unix socket in the job folder."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.seen: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(4096)
                self.seen.append(data)
                conn.sendall(b"echo:" + data)

    def close(self) -> None:
        self.sock.close()


RunJob = Callable[..., RunResult]


@pytest.fixture
def run_job(runner: DockerRunner, image: str, tmp_path: Path) -> Iterator[RunJob]:
    """Run one script through the whole state machine; optionally behind an echo broker."""
    brokers: list[EchoBroker] = []

    def run(script: str, limits: Limits = Limits(timeout_s=30), broker: bool = False,
            on: DockerRunner | None = None) -> RunResult:
        r = on or runner
        spec = JobSpec(job_id=f"t-{uuid.uuid4().hex[:10]}", image=image, command=["python3", "/job/main.py"],
                       files={"main.py": script.encode()}, output_dir=tmp_path / "results", limits=limits)
        try:
            ws = r.prepare(spec)
            if broker:
                brokers.append(EchoBroker(ws.socket_path))
            r.start(spec)
            r.wait(spec)
            return r.collect(spec)
        finally:
            r.cleanup(spec)

    yield run
    for b in brokers:
        b.close()
