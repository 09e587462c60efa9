"""The reviewer filters the audit log, opens an entry with its inclusion proof, and verifies the
whole log against the latest signed checkpoint."""
from __future__ import annotations

from tests.web.conftest import Site, shot


def test_reviewer_filters_the_audit_log_and_verifies_it(site: Site) -> None:
    site.services.audit.checkpoint()  # as the server does after each change
    ctx, page = site.signed_in("rev", "zh")
    page.goto("/audit")
    assert page.locator("h1").inner_text() == "审计日志"
    shot(page, "audit-zh")
    page.select_option("#f-action", "grant.created")
    page.click("#f-apply")
    rows = page.locator("#entries tr.entry")
    assert rows.count() >= 1
    assert {rows.nth(i).get_attribute("data-action") for i in range(rows.count())} == {"grant.created"}
    # by dataset and actor: registrations of farmers by the provider
    page.goto("/audit")
    page.select_option("#f-dataset", "farmers")
    page.fill("#f-actor", "prov")
    page.click("#f-apply")
    actions = {rows.nth(i).get_attribute("data-action") for i in range(rows.count())}
    assert "dataset.added" in actions and actions <= {"dataset.added", "policy.loaded"}, actions
    # a time window that ends before anything happened: nothing
    page.fill("#f-until", "2000-01-01T00:00")
    page.click("#f-apply")
    assert page.locator("#entries tr.entry").count() == 0
    # one entry with its inclusion proof, checked on the server against the signed root
    page.goto("/audit?action=grant.created")
    page.locator("#entries tr.entry a").first.click()
    assert "✓" in page.locator("#proof-result").inner_text()
    assert page.locator("ol.proof li").count() >= 1
    shot(page, "audit-entry-zh")
    # verify the whole log
    page.goto("/audit/verify")
    assert page.locator("#checkpoint").count() == 1
    page.click("#verify")
    result = page.locator("#verify-result")
    assert "ok" in result.get_attribute("class") and "整个日志验证通过" in result.inner_text()
    shot(page, "audit-verify-zh")
    page.click("#lang-en")
    page.goto("/audit/verify")
    page.click("#verify")
    assert "The whole log verifies." in page.locator("#verify-result").inner_text()
    shot(page, "audit-verify-en")
    ctx.close()
