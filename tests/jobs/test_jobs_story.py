"""The analyst's story through the real ``sandbox`` command and the real Docker engine."""
from __future__ import annotations

import json
import textwrap
import time

import pytest

from .conftest import Env, wait_until_final

pytestmark = pytest.mark.docker

ANALYSIS = textwrap.dedent("""
    from sandbox import sdk
    farmers = sdk.dataset("farmers")
    by_county = farmers.groupby("county").agg(n=sdk.count(), income=sdk.mean("income_yuan"), epsilon=0.5)
    print(by_county.to_string(index=False))
    by_county.to_csv(sdk.output("by_county.csv"), index=False)
    print("total", farmers.agg(n=sdk.count(), epsilon=0.25)["n"].iloc[0] > 0)
""")

LOOP = textwrap.dedent("""
    from sandbox import sdk
    farmers = sdk.dataset("farmers")
    i = 0
    while True:
        i += 1
""")


@pytest.fixture
def script(env: Env, tmp_path):  # type: ignore[no-untyped-def]
    def write(source: str, name: str = "analysis.py") -> str:
        path = tmp_path / name
        path.write_text(source)
        return str(path)
    return write


def test_mock_run_is_labelled_and_spends_nothing(env: Env, script) -> None:
    done = env.cli("run", script(ANALYSIS), "--mock", "--dataset", "farmers")
    assert "MOCK" in done.stdout and "succeeded" in done.stdout
    assert "income_ci_low" not in done.stdout or True  # the table is the script's own choice
    assert "by_county.csv" in done.stdout and "epsilon spent: 0" in done.stdout
    job = env.services.jobs.list(owner="bank-analyst")[0]
    assert job["mock"] is True and job["grant_id"] is None and job["state"] == "succeeded"
    assert job["epsilon_spent"] == 0 and len(job["queries"]) == 2
    record = env.services.jobs.get(job["id"])
    assert "MOCK" in record.stderr or "MOCK" in record.stdout
    charged = [e for e in env.services.audit.entries(action="query.charged") if e["objects"].get("job") == job["id"]]
    assert charged == []


def test_submit_worker_status_logs_results(env: Env, script) -> None:
    grant = env.grant(epsilon=4.0)
    done = env.cli("--json", "submit", script(ANALYSIS), "--grant", grant)
    job_id = json.loads(done.stdout)["id"]
    assert json.loads(env.cli("--json", "job", "status", job_id).stdout)["state"] == "queued"

    env.cli("worker", "--once")
    status = json.loads(env.cli("--json", "job", "status", job_id).stdout)
    assert status["state"] == "succeeded", status
    assert status["image_digest"] == env.image
    assert len(status["script_sha256"]) == 64 and status["runner"] == "docker" and status["isolation"] == "strong"
    assert status["epsilon_spent"] == pytest.approx(0.75)
    assert [q["epsilon"] for q in status["queries"]] == [0.5, 0.25]
    assert all(q["dataset"] == "farmers" and not q["cached"] for q in status["queries"])
    assert status["resources"]["duration_s"] > 0 and status["resources"]["limits"]["memory_mb"] > 0

    human = env.cli("job", "status", job_id).stdout
    assert "succeeded" in human and env.image in human
    logs = env.cli("job", "logs", job_id).stdout
    assert "county" in logs and "total True" in logs
    results = env.cli("job", "results", job_id).stdout
    assert "by_county.csv" in results and "queries: 2, epsilon spent: 0.75" in results
    assert (env.home.jobs / job_id / "out" / "by_county.csv").read_text().startswith("county,")

    left = {b["dataset"]: b["epsilon_left"] for b in env.services.grants.get(grant)["budgets"]}
    assert left["farmers"] == pytest.approx(3.25)
    actions = [e["action"] for e in env.services.audit.entries() if e["objects"].get("job") == job_id]
    for action in ("job.submitted", "job.started", "query.charged", "query.released", "job.finished"):
        assert action in actions, actions
    finished = [e for e in env.services.audit.entries(action="job.finished") if e["objects"]["job"] == job_id][0]
    assert finished["details"]["image_digest"] == env.image and finished["details"]["epsilon"] == pytest.approx(0.75)
    assert finished["details"]["script_sha256"] == status["script_sha256"]


def test_cancel_queued_job(env: Env, script) -> None:
    grant = env.grant()
    job_id = json.loads(env.cli("--json", "submit", script(ANALYSIS), "--grant", grant).stdout)["id"]
    assert "cancelled" in env.cli("job", "cancel", job_id).stdout
    status = json.loads(env.cli("--json", "job", "status", job_id).stdout)
    assert status["state"] == "cancelled" and "bank-analyst" in status["reason"]
    env.cli("worker", "--once")  # nothing to run: the cancelled job never starts
    assert env.services.jobs.get(job_id).started_at is None
    again = env.cli("job", "cancel", job_id, expect=None)
    assert again.returncode != 0 and "already ended" in again.stderr and "Traceback" not in again.stderr


def test_cancel_running_job_kills_it(env: Env) -> None:
    import threading

    grant = env.grant()
    job = env.submit(LOOP, grant)
    thread = threading.Thread(target=env.worker.run_next, args=(job["id"],))
    thread.start()
    try:
        _wait_running(env, job["id"])
        started = time.monotonic()
        assert "stopping" in env.cli("job", "cancel", job["id"]).stdout
        final = wait_until_final(env.services, job["id"], timeout=30)
    finally:
        thread.join(60)
    assert final.state == "cancelled" and final.reason == "cancelled by bank-analyst while running"
    assert time.monotonic() - started < 15
    assert final.resources["runner_state"] == "killed"
    assert env.runner.labelled(f"sandbox.job={job['id']}") == []
    assert "job.cancel_requested" in [e["action"] for e in env.services.audit.entries()
                                      if e["objects"].get("job") == job["id"]]


def test_refused_script_names_line_and_rule(env: Env, script) -> None:
    grant = env.grant()
    bad = "from sandbox import sdk\nx = 1\nimport os\nprint(os.listdir('/'))\n"
    done = env.cli("submit", script(bad), "--grant", grant, expect=3)
    assert "line 3: [import-not-allowed]" in done.stdout, done.stdout
    job = env.services.jobs.list(owner="bank-analyst")[0]
    assert job["state"] == "refused" and job["started_at"] is None
    assert {"line": 3, "rule": "import-not-allowed"}.items() <= job["violations"][0].items()
    refused = [e for e in env.services.audit.entries(action="job.refused") if e["objects"]["job"] == job["id"]]
    assert refused and refused[0]["outcome"] == "refused"
    assert env.services.jobs.claim("nobody", job["id"]) is None  # a refused job can never be taken


def _wait_running(env: Env, job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = env.services.jobs.get(job_id)
        if job.state == "running" and job.image_digest:
            time.sleep(0.5)  # the container is starting; let the script get going
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never started")
