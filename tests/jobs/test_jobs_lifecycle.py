"""A job's life beyond the happy path: a worker killed mid-job, grants revoked or expiring under
running jobs, and pooled single-use containers. Real Docker, real database, real processes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import docker
import pytest

from runners.docker_runner import DockerRunner
from sandbox import grants
from sandbox.jobs.models import Job
from sandbox.jobs.worker import PRELOAD, Worker

from .conftest import LIMITS, OPERATOR, SANDBOX, Env, wait_until_final

pytestmark = pytest.mark.docker

QUERY_THEN_SPIN = textwrap.dedent("""
    from sandbox import sdk
    farmers = sdk.dataset("farmers")
    print(farmers.agg(n=sdk.count(), epsilon=0.1))
    x = 0
    while True:
        x += 1
""")
QUERY_LOOP = textwrap.dedent("""
    from sandbox import sdk
    farmers = sdk.dataset("farmers")
    i = 0
    while True:
        farmers.agg(n=sdk.count(), epsilon=0.01)  # the same question: answered from the cache, free
        i += 1
""")


def _until(predicate, timeout: float = 30, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_worker_killed_mid_job_is_recovered_at_once(env: Env, tmp_path: Path) -> None:
    grant = env.grant(epsilon=2.0)
    script = tmp_path / "spin.py"
    script.write_text(QUERY_THEN_SPIN)
    job_id = json.loads(env.cli("--json", "submit", str(script), "--grant", grant).stdout)["id"]

    # `sandbox worker` as users run it (with its default pool of pre-started containers).
    proc = subprocess.Popen([SANDBOX, "worker"], env=env.cli_env(SANDBOX_POOL_SIZE="2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: env.services.jobs.charged_queries(job_id), 60, "the job's first charge")
        assert env.services.jobs.get(job_id).state == "running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out, err = proc.communicate()
    env.texts += [out, err]
    cli_root = env.root.parent / "runner-cli"
    orphans = DockerRunner(root=cli_root).labelled(f"sandbox.root={cli_root}")
    assert any((c.get("Labels") or {}).get("sandbox.job") == job_id for c in orphans)
    assert env.services.jobs.get(job_id).state == "running"  # stuck until a worker recovers it

    # A new worker on this host sees the old pid is dead: recovered now, not after 30 s.
    started = time.monotonic()
    done = env.cli("worker", "--once", SANDBOX_STALE_AFTER_S="3600")
    assert f"closed 1 job(s) left running by a stopped worker: {job_id}" in done.stdout
    assert time.monotonic() - started < 20

    job = env.services.jobs.get(job_id)
    assert job.state == "failed" and "stopped while the job ran" in job.reason
    assert job.outputs == [] and job.stdout == ""
    assert [(q["dataset"], q["epsilon"]) for q in job.queries] == [("farmers", 0.1)]
    left = {b["dataset"]: b["epsilon_left"] for b in env.services.grants.get(grant)["budgets"]}
    assert left["farmers"] == pytest.approx(1.9)  # charged before the crash: stays charged
    actions = [(e["action"], e["outcome"]) for e in env.services.audit.entries() if e["objects"].get("job") == job_id]
    assert ("query.charged", "ok") in actions and ("job.finished", "failed") in actions
    assert DockerRunner(root=cli_root).labelled(f"sandbox.root={cli_root}") == []  # orphans (and slots) swept
    assert not list((cli_root / "jobs").glob("*")) and not list((cli_root / "slots").glob("*"))
    assert "audit verify: OK" in env.cli("audit", "verify").stdout


def test_stale_heartbeat_of_another_hosts_worker(env: Env) -> None:
    """A worker on another host cannot be asked whether it lives: only staleness counts."""
    job = env.submit("print(1)\n", env.grant())
    env.services.jobs.claim("worker-elsewhere-4242-beef", job["id"])
    with env.services.db.transaction() as session:
        session.get(Job, job["id"]).heartbeat_at = datetime.now(timezone.utc) - timedelta(seconds=5)
    patient = Worker(env.services, runner=env.runner, image=env.image, pool_size=0, stale_after=60)
    assert job["id"] not in patient.recover()
    assert env.services.jobs.get(job["id"]).state == "running"
    os.environ["SANDBOX_STALE_AFTER_S"] = "2"
    try:
        eager = Worker(env.services, runner=env.runner, image=env.image, pool_size=0)
    finally:
        del os.environ["SANDBOX_STALE_AFTER_S"]
    assert eager.stale_after == timedelta(seconds=2)
    assert job["id"] in eager.recover()
    final = env.services.jobs.get(job["id"])
    assert final.state == "failed" and "worker-elsewhere-4242-beef" in final.reason


def test_live_worker_in_this_process_is_not_recovered(env: Env) -> None:
    """Two workers of one process: neither takes the other's running job for a dead one's."""
    grant = env.grant()
    job = env.submit(QUERY_THEN_SPIN, grant)
    other = Worker(env.services, runner=env.runner, image=env.image, limits=LIMITS, pool_size=0)
    thread = threading.Thread(target=other.run_next, args=(job["id"],))
    thread.start()
    try:
        _until(lambda: env.services.jobs.charged_queries(job["id"]), 60, "the first charge")
        assert env.worker.recover() == []
        assert env.services.jobs.get(job["id"]).state == "running"
        assert env.runner.labelled(f"sandbox.job={job['id']}")  # not swept either
    finally:
        env.services.jobs.cancel(OPERATOR, job["id"])
        thread.join(60)
    assert env.services.jobs.get(job["id"]).state == "cancelled"


def _run_in_thread(env: Env, job_id: str) -> threading.Thread:
    thread = threading.Thread(target=env.worker.run_next, args=(job_id,))
    thread.start()
    return thread


def test_revoking_the_grant_stops_a_running_job(env: Env) -> None:
    grant = env.grant()
    job = env.submit(QUERY_LOOP, grant)
    thread = _run_in_thread(env, job["id"])
    try:
        _until(lambda: env.services.jobs.charged_queries(job["id"]), 60, "the first charge")
        time.sleep(0.5)  # cached answers, over and over
        revoked = time.monotonic()
        env.services.grants.revoke(OPERATOR, grant, "misuse suspected")
        final = wait_until_final(env.services, job["id"], timeout=30)
        assert time.monotonic() - revoked < 5
    finally:
        thread.join(60)
    assert final.state == "failed", (final.reason, final.stderr)
    assert "revoked" in final.reason and "misuse suspected" in final.reason
    assert env.runner.labelled(f"sandbox.job={job['id']}") == []
    assert [q["epsilon"] for q in final.queries if not q["cached"]] == [0.01]


def test_an_expiring_grant_stops_a_running_job(env: Env) -> None:
    grant = env.grant()
    with env.services.db.transaction() as session:
        grants.get(session, grant).expires_at = datetime.now(timezone.utc) + timedelta(seconds=4)
    job = env.submit(QUERY_LOOP, grant)
    thread = _run_in_thread(env, job["id"])
    try:
        final = wait_until_final(env.services, job["id"], timeout=40)
    finally:
        thread.join(60)
    assert final.state == "failed" and "expired" in final.reason, (final.reason, final.stderr)
    assert final.queries  # it did run until then


def test_pooled_containers_serve_one_job_each(env: Env) -> None:
    # A short root: a unix socket path (root/slots/<slot>/job/broker.sock) has at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="sbx-pool-"))
    runner = DockerRunner(root=root, pool_size=2, pool_image=env.image, pool_limits=LIMITS, pool_preload=PRELOAD)
    client = docker.from_env()
    try:
        assert runner.pool is not None and runner.pool.wait_ready(60)
        raw = Worker(env.services, runner=runner, image=env.image, limits=LIMITS,
                     command=["python3", "-I", "/job/script.py"])
        guarded = Worker(env.services, runner=runner, image=env.image, limits=LIMITS)
        grant = env.grant()
        used: list[str] = []
        marks = []
        for i in range(4):
            assert runner.pool.wait_ready(60)
            ready = runner.pool.container_ids()
            job_id = env.insert_queued(textwrap.dedent("""
                import os
                print("fresh" if not os.path.exists("/tmp/mark") else "REUSED", os.getuid())
                open("/tmp/mark", "w").write("x")
            """), grant)
            raw.run_next(job_id)
            job = env.services.jobs.get(job_id)
            assert job.state == "succeeded", job.stderr
            marks.append(job.stdout.split())
            gone = [cid for cid in ready if not client.containers.list(all=True, filters={"id": cid})]
            assert len(gone) == 1, "the job ran in a pooled container, removed after it"
            used += gone
        assert [m[0] for m in marks] == ["fresh"] * 4
        assert len(set(used)) == 4
        # The real harness and SDK in a pooled container: a DP answer end to end.
        job = env.run(QUERY_THEN_SPIN.split("x = 0")[0], grant, worker=guarded)
        assert job.state == "succeeded" and "n_ci_low" in job.stdout and job.queries[0]["epsilon"] == 0.1
        assert job.image_digest == env.image
    finally:
        runner.close()
        runner.sweep()
    assert runner.labelled(f"sandbox.root={runner.root}") == []
    shutil.rmtree(root, ignore_errors=True)
