"""The full story against a running server, through the Python client, with real containers.

A bank analyst applies for the farmer-credit datasets, the operator approves within the
deadline, the analyst runs the example script on mock data and then for real, reads the DP
results and the budget left; the reviewer verifies the audit log and reads exactly what ran.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sandbox.actors import Actor
from sandbox.client import Client
from sandbox.demo_data import write_demo_csvs
from sandbox.home import Home
from sandbox.services import Services
from tests.api.conftest import POLICY, REPO
from tests.api.live import Server

SCRIPT = REPO / "examples" / "farmer_credit.py"
DATASETS = ["farmers", "utility_payments", "loan_defaults"]


@pytest.mark.docker
def test_full_story_over_http(tmp_path: Path) -> None:
    from runners.image import ensure_image

    ensure_image()
    root = tmp_path / "home"
    op = Actor("olga", "operator")
    services = Services.init(Home(root), op)
    tokens = {}
    try:
        for name, role, org in (("olga", "operator", "platform"), ("pete", "provider", "agri-bureau"),
                                ("li.wei", "analyst", "Rural Commercial Bank"), ("rita", "reviewer", "regulator")):
            services.users.add(op, name, role, org)
            tokens[role], _ = services.users.create_token(op, name, days=7)
    finally:
        services.close()
    files = write_demo_csvs(tmp_path / "files", n_farmers=50_000, n_patients=1000)

    server = Server(root, worker=True).start()
    try:
        provider = Client(server.url, tokens["provider"])
        for name in DATASETS:
            provider.add_dataset(files[name], name, POLICY)
        analyst, operator = Client(server.url, tokens["analyst"]), Client(server.url, tokens["operator"])
        reviewer = Client(server.url, tokens["reviewer"])

        application = analyst.apply(datasets=DATASETS, purpose="credit scoring for farmers without a credit history",
                                    scenario="loan decisions", epsilon=3.0, days=30, user_type="commercial")
        queue = operator.applications(state="submitted")
        assert [a["id"] for a in queue] == [application["id"]]
        assert queue[0]["working_days_left"] > 0 and not queue[0]["overdue"]
        approved = operator.approve(application["id"], note="within the deadline")
        assert approved["state"] == "approved" and approved["answered_late"] is False
        grant_id = approved["grant_id"]

        source = SCRIPT.read_text("utf-8")
        mock = analyst.wait_job(analyst.submit(source, SCRIPT.name, mock=True, datasets=DATASETS)["id"], 600)
        assert mock["state"] == "succeeded", analyst.job_logs(mock["id"])
        assert mock["epsilon_spent"] == 0

        job = analyst.wait_job(analyst.submit(source, SCRIPT.name, grant_id=grant_id)["id"], 600)
        assert job["state"] == "succeeded", analyst.job_logs(job["id"])
        results = analyst.job_results(job["id"])
        assert results["stdout"].strip() and results["queries"]
        for f in results["files"]:
            data = analyst.job_output(job["id"], f["name"])
            assert hashlib.sha256(data).hexdigest() == f["sha256"]
        budget = {b["dataset"]: b for b in analyst.budget(grant_id)}
        assert any(b["epsilon_spent"] > 0 for b in budget.values())
        assert all(b["epsilon_left"] >= 0 for b in budget.values())
        assert analyst.history(grant_id)

        assert reviewer.audit_verify()["ok"]
        ran = reviewer.job_script(job["id"])
        assert ran["script"] == source
        assert ran["script_sha256"] == hashlib.sha256(source.encode()).hexdigest()
        finished = reviewer.audit_entries(action="job.finished", grant_id=grant_id)
        assert finished[-1]["details"]["script_sha256"] == ran["script_sha256"]
        entry = reviewer.audit_entry(finished[-1]["seq"])
        assert entry["inclusion"] is not None
    finally:
        server.stop()
