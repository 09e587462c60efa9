"""Sign-in, CSRF, role checks, the script check's refusals by line, and the operator's other
decisions (refuse with a reason, ask for information, the analyst replies)."""
from __future__ import annotations

from tests.web.conftest import OPERATOR, Site, shot
from tests.web.test_story import apply


def test_sign_in_refuses_a_wrong_token_and_a_token_of_someone_else(site: Site) -> None:
    ctx = site.context("en")
    page = ctx.new_page()
    page.goto("/signin")
    shot(page, "signin-en")
    page.fill("#user", "ana")
    page.fill("#token", site.tokens["bob"])  # a valid token, of another user
    page.click("button#signin")
    assert "do not match" in page.locator(".flash.error").inner_text()
    page.fill("#user", "ana")
    page.fill("#token", "sbx_000000000000_" + "x" * 43)
    page.click("button#signin")
    assert page.locator(".flash.error").count() == 1
    failed = site.services.audit.entries(action="auth.failed")
    assert any(e["details"].get("reason") == "name_mismatch" for e in failed)
    page.goto("/jobs")  # not signed in: sent to sign in, and back afterwards
    assert "/signin" in page.url
    page.fill("#user", "ana")
    page.fill("#token", site.tokens["ana"])
    page.click("button#signin")
    page.wait_for_url("**/jobs")
    page.click("#signout")
    assert page.locator("#signin-link").count() == 1
    ctx.close()


def test_sign_in_with_an_expired_or_revoked_token_says_so(site: Site) -> None:
    from datetime import datetime, timedelta, timezone

    from sandbox.users import ApiToken

    expired, info = site.services.users.create_token(OPERATOR, "ana", days=1, label="to expire")
    with site.services.db.transaction() as session:
        session.get(ApiToken, info["id"]).expires_at = datetime.now(timezone.utc) - timedelta(days=2)
    revoked, info = site.services.users.create_token(OPERATOR, "ana", days=1, label="to revoke")
    site.services.users.revoke_token(OPERATOR, info["id"])
    ctx = site.context("en")
    page = ctx.new_page()
    for token, words in ((expired, "This token expired on"), (revoked, "This token was revoked on")):
        page.goto("/signin")
        page.fill("#user", "ana")
        page.fill("#token", token)
        page.click("button#signin")
        flash = page.locator(".flash.error").inner_text()
        assert words in flash and "UTC+8" in flash and "operator" in flash, flash
    shot(page, "signin-revoked-en")
    # Someone else's name with that token, or a wrong secret: the generic words, nothing more.
    page.fill("#user", "bob")
    page.fill("#token", revoked)
    page.click("button#signin")
    assert "do not match" in page.locator(".flash.error").inner_text()
    page.fill("#user", "ana")
    page.fill("#token", revoked[:-3] + "xyz")
    page.click("button#signin")
    assert "do not match" in page.locator(".flash.error").inner_text()
    zh = site.context("zh").new_page()
    zh.goto("/signin")
    zh.fill("#user", "ana")
    zh.fill("#token", expired)
    zh.click("button#signin")
    assert "此令牌已于" in zh.locator(".flash.error").inner_text()
    zh.context.close()
    ctx.close()


def test_a_form_posted_without_its_csrf_token_is_refused(site: Site) -> None:
    ctx, page = site.signed_in("ana")
    page.goto("/applications/new")
    before = len(site.services.applications.list(analyst="ana"))
    form = {"datasets": "farmers", "purpose": "p", "scenario": "s", "days": "10", "user_type": "public_welfare"}
    refused = page.request.post("/applications/new", form=form)
    assert refused.status == 400
    assert "security token" in refused.text() or "安全令牌" in refused.text()
    wrong = page.request.post("/applications/new", form={**form, "csrf_token": "forged"})
    assert wrong.status == 400
    assert len(site.services.applications.list(analyst="ana")) == before  # nothing stored
    token = page.locator("#application-form input[name=csrf_token]").get_attribute("value")
    accepted = page.request.post("/applications/new", form={**form, "csrf_token": token}, max_redirects=0)
    assert accepted.status == 302
    assert len(site.services.applications.list(analyst="ana")) == before + 1
    # The sign-out button is a form too.
    assert page.request.post("/signout").status == 400
    ctx.close()


def test_refused_script_shows_each_refusal_next_to_its_line(site: Site) -> None:
    ctx, page = site.signed_in("ana", "zh")
    page.goto("/jobs/new")
    page.fill("#script", "from sandbox import sdk\nimport os\nprint(open('/etc/passwd').read())\n")
    page.click("#run-mock")
    assert page.locator("#state").get_attribute("data-state") == "refused"
    assert page.locator("#violations-summary").count() == 1
    line2 = page.locator("#L2")
    assert "bad" in line2.get_attribute("class")
    assert line2.locator(".violation").get_attribute("data-rule") == "import-not-allowed"
    assert page.locator("#L3 .violation").first.get_attribute("data-rule") == "forbidden-builtin"
    assert page.locator("#L1 .violation").count() == 0
    shot(page, "job-refused-zh")
    page.click("#edit")  # edit and run again: the script comes back in the form
    assert "import os" in page.locator("#script").input_value()
    ctx.close()


def test_roles_analyst_sees_only_its_own_and_others_are_refused(site: Site) -> None:
    # ana's job, and bob trying to open it
    actx, ana = site.signed_in("ana")
    ana.goto("/jobs/new")
    ana.fill("#script", "import os\n")
    ana.click("#run-mock")
    job_url = ana.url
    actx.close()
    bctx, bob = site.signed_in("bob")
    response = bob.goto(job_url)
    assert response.status == 404
    assert bob.locator("h1").inner_text().startswith("Not found")
    assert bob.goto(job_url + "/status.json").status == 404
    bob.goto("/jobs")
    assert job_url.rsplit("/", 1)[-1] not in bob.locator("main").inner_text()
    assert bob.goto("/audit").status == 403  # the audit log is for reviewers and operators
    assert ("This page is for a reviewer or an operator. You are signed in as an analyst."
            in bob.locator(".error-message").inner_text())
    bob.goto("/lang/zh_CN?next=/audit")
    assert "您当前以数据使用方身份登录" in bob.locator(".error-message").inner_text()
    shot(bob, "forbidden-zh")
    bob.goto("/lang/en?next=/jobs")
    ana_grant = [g for g in site.services.grants.list("ana")]
    bob_grant = site.services.grants.list("bob")[0]["id"]
    assert bob.goto(f"/grants/{bob_grant}").status == 200
    for g in ana_grant:
        assert bob.goto(f"/grants/{g['id']}").status == 404
    refused = site.services.audit.entries(action="request.refused", actor="bob")
    assert refused and all(e["details"].get("via") == "pages" for e in refused)
    assert any(e["details"]["reason"].startswith("an analyst may not open this page") for e in refused)  # English
    # An analyst cannot decide applications: the decision forms are not there, the route refuses.
    app_id = site.services.applications.list(analyst="bob")[0]["id"] if site.services.applications.list(analyst="bob") else None
    if app_id:
        bob.goto(f"/applications/{app_id}")
        assert bob.locator("#approve-form").count() == 0
    bctx.close()
    # A reviewer reads jobs and the audit log but submits nothing; the public sees neither.
    rctx, rev = site.signed_in("rev")
    assert rev.goto("/jobs/new").status == 403
    assert rev.goto(job_url).status == 200
    rctx.close()
    pub = site.context().new_page()
    pub.goto("/audit")
    assert "/signin" in pub.url
    pub.context.close()


def apply_quick(site: Site) -> str:
    from sandbox.users import User  # noqa: F401 - the analyst exists in the session's home

    analyst = site.services.users.get("ana")
    from sandbox.actors import Actor

    return site.services.applications.apply(
        Actor(analyst["name"], "analyst", analyst["organisation"]), datasets=["loan_defaults"],
        purpose="Default rates by county", scenario="Risk model", epsilon=1.0, days=30,
        user_type="commercial")["id"]


def test_operator_refuses_with_a_reason_and_asks_for_information(site: Site) -> None:
    ctx, page = apply(site, "bob", "zh")
    page.fill("#purpose", "Study of how electricity arrears relate to loan defaults")
    page.click("#submit-application")
    first = page.url.rsplit("/", 1)[-1]
    page.goto("/applications/new?dataset=farmers")
    page.fill("#purpose", "Farm incomes by county")
    page.fill("#scenario", "A public report")
    page.click("#submit-application")
    second = page.url.rsplit("/", 1)[-1]

    octx, op = site.signed_in("op", "en")
    op.goto(f"/applications/{first}")
    op.fill("#refuse-form textarea[name=reason]", "The scenario does not need personal loan records")
    op.click("#refuse")
    assert op.locator("#app-state").get_attribute("data-state") == "refused"
    op.goto(f"/applications/{second}")
    op.fill("#ask-form textarea[name=question]", "Which counties will the report cover?")
    op.click("#ask")
    assert op.locator("#app-state").get_attribute("data-state") == "info_requested"
    assert "paused" in op.locator("dl.facts").inner_text()
    shot(op, "application-info-requested-en")
    # An application past its deadline is listed first and marked overdue.
    from datetime import date

    from sandbox.applications import Application

    late = apply_quick(site)
    with site.services.db.transaction() as session:
        session.get(Application, late).deadline = date(2026, 1, 5)
    op.goto("/applications")
    first_row = op.locator("#applications tbody tr").first
    assert first_row.get_attribute("data-id") == late and "overdue" in first_row.get_attribute("class")
    assert "OVERDUE" in first_row.inner_text()
    op.check("input[name=overdue]")
    op.click(".filters button")
    assert [r.get_attribute("data-id") for r in op.locator("#applications tbody tr").all()] == [late]
    op.goto("/applications")
    shot(op, "applications-queue-en")
    octx.close()

    page.goto(f"/applications/{first}")
    assert "does not need personal loan records" in page.locator("#reason").inner_text()
    page.goto(f"/applications/{second}")
    assert page.locator("#app-state").get_attribute("data-state") == "info_requested"
    page.fill("#reply-form textarea[name=text]", "All eight counties of the prefecture.")
    page.click("#reply")
    assert page.locator("#app-state").get_attribute("data-state") == "submitted"
    assert "All eight counties" in page.locator("ol.history").inner_text()
    shot(page, "application-replied-zh")
    ctx.close()
