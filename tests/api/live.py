"""A real ``sandbox serve`` process on 127.0.0.1 and a free port, on a copy of the test home."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: Path, *, worker: bool = False, port: int | None = None, rate_limit: str = "") -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker = worker
        self.rate_limit = rate_limit
        self.proc: subprocess.Popen | None = None
        self.log = home.parent / f"serve-{self.port}.log"

    def start(self, timeout: float = 60) -> "Server":
        env = {**os.environ, "SANDBOX_RATE_LIMIT": self.rate_limit, "SANDBOX_HOME": str(self.home)}
        env.pop("SANDBOX_SERVER", None)
        cmd = [str(Path(sys.executable).parent / "sandbox"), "--home", str(self.home), "serve", "--port", str(self.port),
               "--worker" if self.worker else "--no-worker"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox serve exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/api/v1/datasets", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("sandbox serve did not come up")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
