"""The bubblewrap runner (no Docker daemon): weak, and says so, but still no network, no writes
outside scratch and output, its own uid, rlimits and a wall-clock timeout."""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from runners import JobSpec, Limits, RunResult, get_runner
from runners.local import LocalRunner

PYTHON = "/usr/bin/python3"  # readable by job uids, unlike a Python under /root
pytestmark = pytest.mark.skipif(not (shutil.which("bwrap") and Path(PYTHON).exists()),
                                reason="needs bubblewrap and /usr/bin/python3")


@pytest.fixture
def local() -> Iterator[LocalRunner]:
    root = Path(tempfile.mkdtemp(prefix="sandbox-local-"))  # job uids must reach it: not under tmp_path
    try:
        yield get_runner("local", root=root, python=PYTHON)
    finally:
        shutil.rmtree(root)


def run(runner: LocalRunner, tmp_path: Path, script: str, limits: Limits = Limits(timeout_s=20)) -> RunResult:
    spec = JobSpec(job_id=f"l-{uuid.uuid4().hex[:8]}", image="", command=["python3", "/job/main.py"],
                   files={"main.py": textwrap.dedent(script).encode()}, output_dir=tmp_path / "results",
                   limits=limits)
    try:
        runner.prepare(spec)
        runner.start(spec)
        runner.wait(spec)
        return runner.collect(spec)
    finally:
        runner.cleanup(spec)
        runner.cleanup(spec)


def test_reports_weak_isolation_and_runs_a_job(local: LocalRunner, tmp_path: Path) -> None:
    result = run(local, tmp_path, """
        import json, os, socket
        def tried(fn):
            try:
                fn(); return "ALLOWED"
            except Exception as exc:
                return type(exc).__name__
        open("/job/out/r.csv", "w").write("a\\n")
        print(json.dumps({
            "uid": os.getuid(), "ifaces": [n for _, n in socket.if_nameindex()],
            "tcp": tried(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)),
            "write_job": tried(lambda: open("/job/x", "w")), "write_usr": tried(lambda: open("/usr/x", "w")),
            "setuid": tried(lambda: os.setuid(0)), "home": os.path.exists("/root/.bashrc"),
            "sdk": __import__("sandbox").__file__,
        }))
    """)
    assert local.isolation == "weak" and result.isolation == "weak"
    assert result.state == "succeeded", result.stderr
    got = json.loads(result.stdout)
    assert got["uid"] >= 20000 and got["ifaces"] == ["lo"] and got["home"] is False
    assert "ALLOWED" not in (got["tcp"], got["write_job"], got["write_usr"], got["setuid"])
    assert got["sdk"] == "/opt/sdk/sandbox/__init__.py"
    assert [o.name for o in result.outputs] == ["r.csv"]


def test_fork_bomb_and_timeout(local: LocalRunner, tmp_path: Path) -> None:
    bomb = run(local, tmp_path, """
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30); os._exit(0)
                n += 1
        except OSError:
            print(n)
    """, Limits(pids=16, timeout_s=20))
    assert bomb.state == "succeeded" and int(bomb.stdout) < 16
    loop = run(local, tmp_path, "while True:\n    pass\n", Limits(timeout_s=1))
    assert loop.state == "timed_out" and loop.duration_s < 10


def test_missing_bubblewrap_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(Exception, match="apt-get install bubblewrap"):
        LocalRunner(python=PYTHON)
