"""Against a real `sandbox serve` process: the client, schemathesis, and a SIGKILL mid-submission."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox.client import Client
from sandbox.errors import Forbidden, NotFound
from tests.api.conftest import World
from tests.api.live import Server


@pytest.fixture
def server(world: World):
    srv = Server(world.root).start()
    yield srv
    srv.stop()


def test_client_against_a_running_server(server: Server, world: World) -> None:
    ana = Client(server.url, world.tokens["analyst"])
    assert ana.me()["name"] == "ana"
    assert [d["name"] for d in ana.datasets()] == ["farmers", "utility_payments"]
    assert ana.mock_csv("farmers", rows=3).count("\n") == 4
    job = ana.submit("print(1)\n", "x.py", mock=True, datasets=["farmers"])
    assert job["state"] == "queued" and job["mock"]
    refused = ana.submit("import os\n", "y.py", mock=True)
    assert refused["state"] == "refused" and refused["violations"]
    with pytest.raises(NotFound):
        ana.grant(world.other_grant)
    with pytest.raises(Forbidden) as err:
        ana.audit_verify()
    assert err.value.code == "forbidden" and err.value.status == 403
    assert Client(server.url, world.tokens["reviewer"]).audit_verify()["ok"]


def test_schemathesis_against_the_served_spec(server: Server, world: World, tmp_path: Path) -> None:
    """Fuzz every operation (bounded), as an operator: no 5xx; statuses, content types and bodies as described."""
    exe = Path(sys.executable).parent / "schemathesis"
    cmd = [str(exe), "run", f"{server.url}/openapi.json", "--url", server.url,
           "-H", f"Authorization: Bearer {world.tokens['operator']}",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                       "response_schema_conformance",
           "--max-examples", "20", "--seed", "1", "--no-color", "--request-timeout", "30",
           "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert Client(server.url, world.tokens["reviewer"]).audit_verify()["ok"]


def test_sigkill_during_submissions_leaves_whole_jobs_only(world: World) -> None:
    """Kill the server while analysts submit: each job is fully queued (row + audit entry) or absent."""
    srv = Server(world.root).start()
    ana = Client(srv.url, world.tokens["analyst"], timeout=10)
    accepted: list[str] = []
    stop = threading.Event()

    def submit() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                accepted.append(ana.submit(f"print({i})\n", f"s{i}.py", mock=True, datasets=["farmers"])["id"])
            except Exception:
                return

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    srv.kill()  # SIGKILL, mid-request
    stop.set()
    for t in threads:
        t.join(15)
    assert accepted, "no submission got through before the kill"

    srv2 = Server(world.root).start()
    try:
        reviewer = Client(srv2.url, world.tokens["reviewer"])
        assert reviewer.audit_verify()["ok"], reviewer.audit_verify()["problems"]
        jobs = {j["id"]: j for j in reviewer.jobs(limit=500)}
        submitted = {e["objects"]["job"] for e in reviewer.audit_entries(action="job.submitted")}
        assert set(accepted) <= set(jobs)          # every accepted job is there
        mine = {j for j, info in jobs.items() if info["state"] == "queued"}
        assert mine == {j for j in submitted if j in jobs and jobs[j]["state"] == "queued"}
        assert {j for j in jobs if jobs[j]["mock"]} <= submitted  # no job row without its audit entry
        assert submitted <= set(jobs)               # no audit entry without its job row
    finally:
        srv2.stop()
