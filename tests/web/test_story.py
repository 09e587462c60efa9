"""End to end in a real browser: an analyst applies, the operator approves, the analyst runs the
script on mock data and then for real (in real containers) and sees a chart; the reviewer reads
exactly what ran."""
from __future__ import annotations

import re

import pytest

from tests.web.conftest import REPO, SCREENSHOTS, Site, shot

SCRIPT = (REPO / "examples" / "farmer_credit.py").read_text(encoding="utf-8")


def _wait_final(page, timeout_ms: int = 180_000) -> str:  # type: ignore[no-untyped-def]
    """The job page polls the job's status and reloads when it ends: wait for that."""
    page.wait_for_function(
        "['succeeded','failed','cancelled','refused'].includes(document.querySelector('#state').dataset.state)",
        timeout=timeout_ms)
    return page.locator("#state").get_attribute("data-state")


def apply(site: Site, user: str = "ana", lang: str = "en"):  # type: ignore[no-untyped-def]
    ctx, page = site.signed_in(user, lang)
    page.goto("/catalog/farmers")
    page.click("#apply")
    for name in ("farmers", "utility_payments", "loan_defaults"):
        page.check(f"input[name=datasets][value={name}]")
    page.fill("#purpose", "Credit scoring for farmers without a credit history")
    page.fill("#scenario", "Loan pre-approval at the bank's rural branches")
    page.fill("#epsilon", "4")
    page.fill("#days", "60")
    page.select_option("#user_type", "commercial")
    return ctx, page


@pytest.mark.docker
def test_analyst_applies_operator_approves_analyst_runs_mock_then_real(site: Site, worker: object) -> None:
    ctx, page = apply(site)
    shot(page, "application-form-en")
    page.click("#submit-application")
    assert page.locator("#app-state").get_attribute("data-state") == "submitted"
    app_id = page.url.rsplit("/", 1)[-1]
    assert "working days left" in page.locator("dl.facts").inner_text()
    shot(page, "application-analyst-en")

    # The operator's queue, in Chinese: sorted by deadline, days left shown; approve.
    octx, op = site.signed_in("op", "zh")
    op.goto("/applications")
    row = op.locator(f"tr[data-id={app_id}]")
    assert row.count() == 1
    assert re.search(r"\b(9|10)\b", row.locator("td").nth(6).inner_text())  # working days left
    shot(op, "applications-queue-zh")
    row.locator("a").first.click()
    shot(op, "application-operator-zh")
    op.fill("#approve-form input[name=note]", "Approved for the pilot; commercial prices apply")
    op.click("#approve")
    assert op.locator("#app-state").get_attribute("data-state") == "approved"
    grant_id = op.locator("#grant-link").inner_text()
    octx.close()

    # The analyst sees the grant, starts a job from it and runs it on mock data first.
    page.reload()
    assert page.locator("#app-state").get_attribute("data-state") == "approved"
    page.click("#start-job")
    page.fill("#script", SCRIPT)
    page.fill("input[name=name]", "farmer_credit.py")
    shot(page, "job-new-en")
    page.click("#run-mock")
    assert page.locator(".badge.mock").count() >= 1
    assert page.locator("#live").count() == 1  # followed live while it runs
    assert _wait_final(page) == "succeeded", page.locator(".reason, details pre.out").all_text_contents()
    assert "Farmers and mean household income" in page.locator("#stdout").inner_text()
    assert page.locator("figure.chart-img img").count() == 1  # the script's own matplotlib chart
    shot(page, "job-mock-en")

    # One click: the same script on the real data, under the grant.
    page.select_option("#real-form select", grant_id)
    page.click("#real-form #run-real")
    assert _wait_final(page) == "succeeded", page.locator(".reason, details pre.out").all_text_contents()
    assert page.locator(".badge.mock").count() == 0
    assert page.locator("svg.chart").count() >= 3  # estimates with error bars, drawn on the server
    assert page.locator("svg.chart line").count() > 10
    img = page.locator("figure.chart-img img")
    assert img.count() == 1 and img.evaluate("i => i.naturalWidth") > 100
    table = page.locator("table.answer-table").first.inner_text()
    assert "Fugou" in table and "[" in table  # estimates with their intervals
    queries = page.locator("#queries tbody tr")
    assert queries.count() == 3
    assert float(page.locator("#epsilon").inner_text()) == pytest.approx(1.9)
    files = page.locator("ul.files a").all_inner_texts()
    assert "county_credit_profile.csv" in files
    download = page.request.get(page.locator("ul.files a", has_text="county_credit_profile.csv").get_attribute("href"))
    assert download.ok and download.text().startswith("county,")
    shot(page, "job-real-en")
    page.locator("#answer-1").screenshot(path=str(SCREENSHOTS / "job-real-chart-en.png"))
    job_id = page.url.rsplit("/", 1)[-1]
    page.click("#lang-zh")
    assert "结果" in page.locator("h2").all_inner_texts()
    shot(page, "job-real-zh")

    # The grant's page: scope, term, a budget gauge and the past queries with their cost.
    page.goto(f"/grants/{grant_id}")
    assert page.locator("svg.gauge").count() == 3
    assert page.locator("#history tbody tr").count() == 3
    shot(page, "grant-zh")
    ctx.close()

    # The reviewer reads exactly what ran: script, image digest, queries, outputs.
    rctx, rev = site.signed_in("rev", "en")
    rev.goto("/audit?action=job.finished")
    rev.locator("#entries a", has_text=re.compile(r"^\d+$")).last.click()
    rev.goto(f"/jobs/{job_id}")
    assert "sha256:" in rev.locator("dl.facts").inner_text()
    assert "sdk.dataset(\"farmers\")" in rev.locator("#script").inner_text()
    assert rev.locator("#queries tbody tr").count() == 3
    assert rev.locator("#real-form").count() == 0 and rev.locator("#edit").count() == 0  # reads only
    shot(rev, "job-reviewer-en")
    rctx.close()
