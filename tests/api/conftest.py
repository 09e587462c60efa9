"""A real sandbox home (SQLite, vault, audit log) with a user and token for each role.

The home is built once per session; each test works on its own copy, so tests that change
state (revoke a grant, add a user) never see each other.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandbox.actors import Actor
from sandbox.demo_data import write_demo_csvs
from sandbox.home import Home
from sandbox.services import Services

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "farm-credit.yaml"
OPERATOR = Actor("olga", "operator")

USERS = {
    "operator": ("olga", "platform-operator"),
    "provider": ("pete", "agri-bureau"),
    "analyst": ("ana", "rural-bank"),
    "reviewer": ("rita", "regulator"),
}
OTHERS = {"provider2": ("paul", "power-company", "provider"), "analyst2": ("bob", "other-bank", "analyst")}


@dataclass
class World:
    root: Path
    tokens: dict[str, str] = field(default_factory=dict)
    grant: str = ""          # ana's grant on farmers
    other_grant: str = ""    # bob's grant on farmers
    job: str = ""            # ana's finished job, with an output file
    queued_job: str = ""     # ana's queued mock job
    other_job: str = ""      # bob's job
    files: dict[str, Path] = field(default_factory=dict)
    application: str = ""        # ana's submitted application
    info_application: str = ""   # ana's application awaiting her reply
    other_application: str = ""  # bob's application

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role in self.tokens else {}


def _finish_with_output(services: Services, job_id: str, name: str, content: bytes) -> None:
    """What the worker does at the end of a job (without a container): claim, write, finish."""
    import hashlib

    services.jobs.claim("test-worker", job_id)
    out = services.home.jobs / job_id / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(content)
    services.jobs.finish(job_id, "succeeded", exit_code=0, stdout="DP result: 42\n",
                         outputs=[{"name": name, "size": len(content),
                                   "sha256": hashlib.sha256(content).hexdigest()}])


@pytest.fixture(scope="session")
def base_world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("api") / "home"
    files = write_demo_csvs(root.parent / "files", n_farmers=2000, n_patients=1000)
    services = Services.init(Home(root), OPERATOR)
    world = World(root, files=files)
    try:
        for role, (name, org) in USERS.items():
            services.users.add(OPERATOR, name, role, org)
            world.tokens[role], _ = services.users.create_token(OPERATOR, name, days=30)
        for key, (name, org, role) in OTHERS.items():
            services.users.add(OPERATOR, name, role, org)
            world.tokens[key], _ = services.users.create_token(OPERATOR, name, days=30)
        services.catalog.add(files["farmers"], "farmers", POLICY, Actor("pete", "provider"))
        services.catalog.add(files["utility_payments"], "utility_payments", POLICY, Actor("paul", "provider"))
        world.grant = services.grants.create(OPERATOR, analyst="ana", datasets=["farmers"], epsilon=2.0, days=30,
                                             purpose="credit scoring")["id"]
        world.other_grant = services.grants.create(OPERATOR, analyst="bob", datasets=["farmers"], epsilon=2.0,
                                                   days=30, purpose="other bank")["id"]
        script = "from sandbox import sdk\nprint('hello')\n"
        world.job = services.jobs.submit(Actor("ana", "analyst"), "a.py", script, grant_id=world.grant)["id"]
        _finish_with_output(services, world.job, "result.csv", b"group,count\na,120\n")
        world.queued_job = services.jobs.submit(Actor("ana", "analyst"), "b.py", script,
                                                mock_datasets=["farmers"])["id"]
        world.other_job = services.jobs.submit(Actor("bob", "analyst"), "c.py", script,
                                               grant_id=world.other_grant)["id"]
        apply = dict(datasets=["farmers"], purpose="credit scoring", scenario="loans", epsilon=1.0, days=30,
                     user_type="commercial")
        world.application = services.applications.apply(Actor("ana", "analyst"), **apply)["id"]
        world.info_application = services.applications.apply(Actor("ana", "analyst"), **apply)["id"]
        services.applications.ask_info(OPERATOR, world.info_application, "which branch?")
        world.other_application = services.applications.apply(Actor("bob", "analyst"), **apply)["id"]
    finally:
        services.close()
    return world


@pytest.fixture
def world(base_world: World, tmp_path: Path) -> World:
    root = tmp_path / "home"
    shutil.copytree(base_world.root, root)
    return World(root, dict(base_world.tokens), base_world.grant, base_world.other_grant, base_world.job,
                 base_world.queued_job, base_world.other_job, base_world.files, base_world.application,
                 base_world.info_application, base_world.other_application)


@pytest.fixture
def app(world: World):
    from sandbox.web import create_app

    app = create_app({"home": str(world.root), "rate_limit": "", "worker": False})
    yield app
    app.extensions["sandbox.services"].db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()
