"""Browser tests of the web pages: a real app on a free port, Debian's chromium driven by Playwright.

One sandbox home per session (small synthetic demo datasets, one user per role, tokens), the
app from ``create_app`` served by werkzeug in a background thread, and one chromium. The
worker that runs jobs in real containers is started only by the tests that need Docker.
Screenshots of every page go to ``artifacts/screenshots/`` (git-ignored).
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from sandbox.actors import Actor
from sandbox.demo_data import write_demo_csvs
from sandbox.home import Home
from sandbox.services import Services

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "farm-credit.yaml"
DATASETS = ("farmers", "utility_payments", "loan_defaults")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
OPERATOR = Actor("sandbox-setup", "operator")
USERS = {  # name: (role, organisation)
    "op": ("operator", "Zhoukou Public Data Operations Centre"),
    "ana": ("analyst", "Zhoukou Rural Commercial Bank"),
    "bob": ("analyst", "Henan Agricultural University"),
    "rev": ("reviewer", "Provincial Data Bureau"),
    "prov": ("provider", "Zhoukou Municipal Bureau of Agriculture and Rural Affairs"),
}


def chromium_path() -> str | None:
    for candidate in (os.environ.get("SANDBOX_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


@dataclass
class Site:
    url: str
    services: Services
    tokens: dict[str, str]
    browser: object
    home: Path
    worker_started: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def context(self, lang: str = "en", **kw):  # type: ignore[no-untyped-def]
        """A fresh browser context (cookies of its own) reading pages in ``lang``."""
        ctx = self.browser.new_context(locale="zh-CN" if lang == "zh" else "en-US", base_url=self.url,  # type: ignore[attr-defined]
                                       **kw)
        ctx.set_default_timeout(15_000)
        return ctx

    def signed_in(self, user: str, lang: str = "en", **kw):  # type: ignore[no-untyped-def]
        ctx = self.context(lang, **kw)
        page = ctx.new_page()
        page.goto("/signin")
        page.fill("#user", user)
        page.fill("#token", self.tokens[user])
        page.click("button#signin")
        page.wait_for_url(re.compile(r".*/$"))
        return ctx, page


def shot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """A full-page screenshot as artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup installs it)")
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from sandbox.web import create_app

    base = tmp_path_factory.mktemp("web")
    home = Home(base / "home")
    services = Services.init(home, OPERATOR)
    files = write_demo_csvs(base / "provider", n_farmers=20000, n_patients=500)
    for name in DATASETS:
        services.catalog.add(files[name], name, POLICY, Actor("prov", "provider"))
    tokens = {}
    for name, (role, org) in USERS.items():
        services.users.add(OPERATOR, name, role, org)
        tokens[name], _ = services.users.create_token(OPERATOR, name, days=2)
    # An existing grant of another analyst: something for the disclosure page and the audit log.
    services.grants.create(OPERATOR, analyst="bob", datasets=["farmers"], epsilon=2.0, days=30,
                           purpose="Study of farm household incomes", user_type="public_welfare")
    services.close()

    app = create_app({"HOME": str(home.root), "RATE_LIMIT": "", "WORKER": False})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu",
                                                                "--disable-dev-shm-usage"])
        s = Site(url, app.extensions["sandbox.services"], tokens, browser, home.root)
        try:
            yield s
        finally:
            s._stop.set()
            browser.close()
            server.shutdown()
            thread.join(timeout=10)


@pytest.fixture(scope="session")
def worker(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The worker, in a thread, running jobs in real containers (Docker) as `sandbox serve` does."""
    docker = pytest.importorskip("docker")
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    from runners.docker_runner import DockerRunner
    from runners.image import ensure_image
    from sandbox.jobs.worker import Worker

    image = ensure_image()
    runner = DockerRunner(root=tmp_path_factory.mktemp("runner"))
    w = Worker(site.services, runner=runner, image=image, pool_size=0)
    stop = threading.Event()
    thread = threading.Thread(target=w.run_forever, kwargs={"stop": stop, "idle_s": 0.1},
                              name="web-test-worker", daemon=True)
    thread.start()
    yield w
    stop.set()
    thread.join(timeout=60)
    close = getattr(w, "close", None)
    if close:
        close()
    runner.sweep()
