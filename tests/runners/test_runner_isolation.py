"""Each isolation claim of the Docker runner, tried for real inside a job: every attempt fails."""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from runners import Limits

pytestmark = pytest.mark.docker


def attempts(result) -> dict:
    """The job prints one JSON object: attempt name -> what happened."""
    assert result.state == "succeeded", result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


PROBE = textwrap.dedent("""
    import json, os, socket
    results = {}
    def attempt(name, fn):
        try:
            fn()
            results[name] = "ALLOWED"
        except Exception as exc:
            results[name] = type(exc).__name__ + ": " + str(exc)
""")
DONE = "\nprint(json.dumps(results))\n"


def test_job_runs_with_empty_environment_and_its_own_uid(run_job, image) -> None:
    result = run_job(PROBE + textwrap.dedent("""
        results["uid"] = os.getuid(); results["gid"] = os.getgid()
        results["env"] = sorted(os.environ)
        open("/job/out/table.csv", "w").write("a,b\\n1,2\\n")
        import numpy, pandas, polars, matplotlib, RestrictedPython, sandbox
    """) + DONE)
    got = attempts(result)
    assert 20000 <= got["uid"] < 30000 and got["gid"] == got["uid"]
    assert set(got["env"]) <= {"HOME", "HOSTNAME", "LC_CTYPE", "MPLBACKEND", "MPLCONFIGDIR", "PATH",
                               "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "SANDBOX_OUTPUT",
                               "SANDBOX_SOCKET", "TMPDIR"}
    assert result.image_digest == image and result.isolation == "strong"
    assert [(o.name, o.size) for o in result.outputs] == [("table.csv", 8)]


def test_broker_socket_is_the_only_door(run_job) -> None:
    host = socket.socket()
    host.bind(("0.0.0.0", 0))
    host.listen(1)
    port = host.getsockname()[1]
    try:
        result = run_job(PROBE + textwrap.dedent(f"""
            s = socket.socket(socket.AF_UNIX); s.connect("/job/broker.sock"); s.sendall(b"ping")
            results["broker"] = s.recv(100).decode()
            attempt("tcp_localhost", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3))
            attempt("tcp_bridge", lambda: socket.create_connection(("172.17.0.1", {port}), timeout=3))
            attempt("tcp_outside", lambda: socket.create_connection(("1.1.1.1", 53), timeout=3))
            attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
            results["interfaces"] = sorted(name for _, name in socket.if_nameindex())
        """) + DONE, broker=True)
    finally:
        host.close()
    got = attempts(result)
    assert got["broker"] == "echo:ping"
    for name in ("tcp_localhost", "tcp_bridge", "tcp_outside", "dns"):
        assert got[name] != "ALLOWED", name
    assert got["interfaces"] == ["lo"]


def test_nothing_outside_scratch_and_output_is_writable(run_job) -> None:
    result = run_job(PROBE + textwrap.dedent("""
        for path in ["/evil", "/job/evil", "/job/main.py", "/usr/evil", "/etc/passwd", "/opt/venv/evil", "/var/evil"]:
            attempt("write " + path, lambda: open(path, "a").write("x"))
        attempt("scratch", lambda: open("/tmp/ok", "w").write("x"))
        attempt("output", lambda: open("/job/out/ok.txt", "w").write("x"))
        open("/tmp/run.sh", "w").write("#!/bin/sh\\necho hi\\n"); os.chmod("/tmp/run.sh", 0o755)
        attempt("exec from scratch", lambda: os.execv("/tmp/run.sh", ["/tmp/run.sh"]))
    """) + DONE)
    got = attempts(result)
    assert got.pop("scratch") == "ALLOWED" and got.pop("output") == "ALLOWED"
    assert all(v != "ALLOWED" for v in got.values()), got


def test_no_host_files_and_no_docker_socket(run_job, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("top secret")
    result = run_job(PROBE + textwrap.dedent(f"""
        for path in ["/var/run/docker.sock", "/run/docker.sock", "{secret}", "/etc/shadow", "/root/.bashrc"]:
            attempt("read " + path, lambda: open(path, "rb").read())
        results["mounts"] = [l.split()[1] for l in open("/proc/self/mounts")]
        results["job_files"] = sorted(os.listdir("/job"))
    """) + DONE)
    got = attempts(result)
    assert all(v != "ALLOWED" for k, v in got.items() if k.startswith("read ")), got
    assert got["job_files"] == ["main.py", "out"]
    assert not [m for m in got["mounts"] if "docker.sock" in m or m.startswith(("/work", "/root", "/var/lib"))]


def test_privileges_cannot_be_raised(run_job) -> None:
    result = run_job(PROBE + textwrap.dedent("""
        import ctypes, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        def mount():
            if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) != 0:
                raise OSError(ctypes.get_errno(), "mount failed")
        attempt("setuid 0", lambda: os.setuid(0))
        attempt("setgid 0", lambda: os.setgid(0))
        attempt("chown to root", lambda: (open("/tmp/f", "w").close(), os.chown("/tmp/f", 0, 0)))
        attempt("mknod", lambda: os.mknod("/tmp/dev", 0o600 | 0o020000, os.makedev(1, 3)))
        attempt("mount", mount)
        attempt("chroot", lambda: os.chroot("/tmp"))
        attempt("su", lambda: subprocess.run(["su", "-c", "id", "root"], check=True, timeout=5, input=b""))
        attempt("sudo", lambda: subprocess.run(["sudo", "id"], check=True, timeout=5))
        status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
        results["CapEff"] = status["CapEff"].strip(); results["CapBnd"] = status["CapBnd"].strip()
        results["NoNewPrivs"] = status["NoNewPrivs"].strip()
    """) + DONE)
    got = attempts(result)
    assert got.pop("CapEff") == "0000000000000000" and got.pop("CapBnd") == "0000000000000000"
    assert got.pop("NoNewPrivs") == "1"
    assert all(v != "ALLOWED" for v in got.values()), got


def test_fork_bomb_is_held_by_the_pids_limit(run_job) -> None:
    result = run_job(textwrap.dedent("""
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60); os._exit(0)
                n += 1
        except OSError as exc:
            print(n, exc.errno)
    """), limits=Limits(pids=32, timeout_s=30))
    assert result.state == "succeeded", result.stderr
    forked, errno = map(int, result.stdout.split())
    assert forked < 32 and errno == 11  # EAGAIN
    assert subprocess.run(["true"]).returncode == 0  # the host still forks


def test_memory_bomb_ends_in_oom(run_job) -> None:
    result = run_job("chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 2**20))\n",
                     limits=Limits(memory_mb=128, tmpfs_mb=16, timeout_s=30))
    assert result.state in ("oom", "failed")
    assert result.state == "oom" or "MemoryError" in result.stderr


def test_infinite_loop_times_out_and_container_is_removed(runner, run_job) -> None:
    result = run_job("while True:\n    pass\n", limits=Limits(timeout_s=2))
    assert result.state == "timed_out" and result.exit_code != 0, result
    assert 2 <= result.duration_s < 15
    assert runner.labelled(f"sandbox.root={runner.root}") == []


def test_huge_stdout_is_capped(run_job) -> None:
    result = run_job("import sys\nfor _ in range(5000):\n    print('x' * 999)\nprint('e' * 50000, file=sys.stderr)\n",
                     limits=Limits(stdout_bytes=10_000))
    assert result.state == "succeeded"
    assert result.stdout_truncated and len(result.stdout) == 10_000, (len(result.stdout), len(result.stderr), result.stderr_truncated)
    assert result.stderr_truncated and len(result.stderr) == 10_000


def test_scratch_and_file_size_are_limited(run_job) -> None:
    result = run_job(PROBE + textwrap.dedent("""
        def fill(path, chunk=2**20):
            written = 0
            try:
                with open(path, "wb") as f:
                    while written < 2**30:
                        f.write(b"0" * chunk); f.flush(); written += chunk
            except OSError as exc:
                return [written, exc.errno]
            return [written, 0]
        results["tmp"] = fill("/tmp/fill")
        os.remove("/tmp/fill")
        results["tmp_many"] = [fill(f"/tmp/f{i}") for i in range(8)][-1]
        results["out"] = fill("/job/out/big.csv")
    """) + DONE, limits=Limits(tmpfs_mb=16, fsize_mb=4, memory_mb=256, output_bytes=1_000_000))
    got = attempts(result)
    assert got["tmp"] == [4 * 2**20, 27]  # EFBIG: one file is capped by RLIMIT_FSIZE
    assert got["tmp_many"][0] < 4 * 2**20 and got["tmp_many"][1] == 28  # ENOSPC: tmpfs is full
    assert got["out"][0] <= 4 * 2**20 and got["out"][1] in (27, 28)
    assert result.refused.get("big.csv", "").startswith("too large")


def test_outputs_refused_at_collection(run_job, tmp_path: Path) -> None:
    result = run_job(textwrap.dedent("""
        import os
        os.symlink("/etc/passwd", "/job/out/passwd.txt")
        os.symlink("/job/main.py", "/job/out/script.txt")
        os.mkfifo("/job/out/pipe.csv")
        os.mkdir("/job/out/sub.csv")
        open("/job/out/big.csv", "wb").write(b"1" * 600_000)
        open("/job/out/prog.py", "w").write("print(1)")
        open("/job/out/.hidden.txt", "w").write("x")
        open("/job/out/ok.json", "w").write("{}")
        open("/job/out/small.csv", "w").write("a\\n")
    """), limits=Limits(output_bytes=500_000))
    assert result.state == "succeeded", result.stderr
    assert [o.name for o in result.outputs] == ["ok.json", "small.csv"]
    assert set(result.refused) == {"passwd.txt", "script.txt", "pipe.csv", "sub.csv", "big.csv", "prog.py",
                                   ".hidden.txt"}
    delivered = tmp_path / "results"
    assert sorted(p.name for p in delivered.iterdir()) == ["ok.json", "small.csv"]
    assert not any(p.is_symlink() for p in delivered.iterdir())
