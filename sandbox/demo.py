"""``sandbox demo``: the farmer-credit story end to end, on synthetic data, in a few minutes.

Builds the analysis image if needed, makes a fresh demo home, registers three synthetic
datasets, grants a bank's analyst a budget, runs the example script first on mock data and
then for real in a sealed container, and shows the DP results, the budget left and the
audit log's verification.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from sandbox.actors import Actor
from sandbox.demo_data import write_demo_csvs
from sandbox.errors import InvalidInput
from sandbox.home import Home
from sandbox.services import Services

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "farm-credit.yaml"
SCRIPT = REPO / "examples" / "farmer_credit.py"
DATASETS = ("farmers", "utility_payments", "loan_defaults")
MARKER = ".sandbox-demo"
OPERATOR = Actor("operator", "operator")
ANALYST = "bank-analyst"


def fresh_home(root: Path) -> Home:
    """A demo home is remade on every run; a folder that is not one is never deleted."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise InvalidInput(
                f"{root} exists and is not a demo home",
                "pass --home with an empty or new folder for the demo",
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `sandbox demo`; removed on the next demo run\n")
    return Home(root)


def run_demo(root: Path, say: Callable[[str], None], n_farmers: int = 100_000) -> bool:
    from runners.image import ensure_image
    from sandbox.jobs.worker import Worker

    say("1. analysis image (built offline on first use; a few minutes)")
    image = ensure_image()
    say(f"   {image[:19]}")

    home = fresh_home(root)
    services = Services.init(home, OPERATOR)
    try:
        say(f"2. sandbox home {home.root}: database, master key, audit signing key")
        files = write_demo_csvs(home.root / "provider-files", n_farmers=n_farmers)
        for name in DATASETS:
            added = services.catalog.add(files[name], name, POLICY, Actor("provider", "provider"))
            say(f"   registered {name} (version {added.version[:12]}, encrypted in the vault)")

        grant = services.grants.create(
            OPERATOR, analyst=ANALYST, datasets=list(DATASETS), epsilon=None, days=90,
            purpose="credit scoring for farmers without a credit history", user_type="commercial",
        )
        say(f"3. grant {grant['id']} for {ANALYST} on {', '.join(DATASETS)} (each policy's default budget)")

        worker = Worker(services, image=image, pool_size=0)  # two jobs, one after the other: no pool
        analyst = Actor(ANALYST, "analyst")
        source = SCRIPT.read_text(encoding="utf-8")
        for step, label, kwargs in ((4, "MOCK data", {"mock_datasets": list(DATASETS)}),
                                    (5, "the real data", {"grant_id": grant["id"]})):
            job = services.jobs.submit(analyst, SCRIPT.name, source, **kwargs)
            say(f"{step}. {SCRIPT.name} on {label}: job {job['id']} in a sealed container")
            job = worker.run_next(job["id"]) or job
            record = services.jobs.get(job["id"])
            say(f"   {job['state']}; {len(job['queries'])} queries, epsilon {job['epsilon_spent']:g}")
            if job["state"] != "succeeded":
                say(f"   {job['reason']}\n{record.stderr}")
                return False
        say("")
        say(record.stdout.rstrip())
        say("")
        say(f"outputs in {home.jobs / job['id'] / 'out'}: {', '.join(o['name'] for o in job['outputs'])}")
        for b in services.grants.get(grant["id"])["budgets"]:
            say(f"ledger, {b['dataset']}: spent epsilon {b['epsilon_spent']:g}, "
                f"{b['epsilon_left']:g} of {b['epsilon_total']:g} left")
        services.audit.checkpoint()
        report = services.audit.verify()
        say(f"audit verify: {'OK' if report.ok else 'FAILED'} ({report.size} entries, {report.checkpoints} checkpoints)")
        for problem in report.problems:
            say(f"  {problem}")
        return report.ok
    finally:
        services.close()
