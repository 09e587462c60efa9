"""Pricing (free public welfare, metered commercial, exact ceiling) and the disclosure report."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from sandbox import ledger
from sandbox.cli import main
from sandbox.disclosure import to_csv, to_csv_all, to_json
from sandbox.errors import PolicyInvalid
from sandbox.pricing import price_list
from tests.governance.conftest import ANALYST, OPERATOR, OTHER


def _grant(gov, user_type, datasets=("credit",), analyst="ana", purpose="credit scoring"):
    return gov.services.grants.create(OPERATOR, analyst=analyst, datasets=list(datasets), epsilon=4.0, days=30,
                                      purpose=purpose, user_type=user_type)["id"]


def _charge_query(gov, grant_id, dataset, epsilon, digest="q1", job=None):
    with gov.services.db.transaction() as s:
        ledger.reserve(s, grant_id, dataset, epsilon, 0.0, digest, job)
        return gov.services.pricing.charge_query(s, grant_id, dataset, epsilon, query_digest=digest, job_id=job)


def test_public_welfare_is_free(gov):
    g = _grant(gov, "public_welfare")
    fee = _charge_query(gov, g, "credit", 1.0)
    with gov.services.db.transaction() as s:
        compute = gov.services.pricing.charge_compute(s, g, 3600.0, job_id="j-1")
    assert fee["amount"] == "0.00" and compute["amount"] == "0.00" and fee["basis"].startswith("free")
    assert gov.entries("fee.charged") == []  # nothing charged, nothing to audit; the rows record usage
    assert len(gov.services.pricing.fees(g)) == 2
    assert gov.services.pricing.total(g)["ceiling"] is None


def test_commercial_is_metered_per_query_epsilon_and_second(gov):
    g = _grant(gov, "commercial", datasets=("credit", "open_stats"))
    fee = _charge_query(gov, g, "credit", 0.5)  # credit's own per_epsilon of 1500 overrides the default
    assert fee["amount"] == "752.00" and fee["amount_minor"] == 75200
    fee = _charge_query(gov, g, "open_stats", 0.1, digest="q2")
    assert fee["amount"] == "82.00"  # 2 + 800 * 0.1, exactly
    with gov.services.db.transaction() as s:
        fee = gov.services.pricing.charge_compute(s, g, 12.5, job_id="j-1")
    assert fee["amount"] == "0.25" and fee["dataset"] is None
    audited = gov.entries("fee.charged")
    assert [e.details["amount"] for e in audited] == ["752.00", "82.00", "0.25"]
    assert audited[0].grant_id == g and audited[0].objects["dataset"] == "credit"
    assert gov.services.pricing.total(g)["charged"] == "834.25"


def test_ceiling_is_never_exceeded_exactly(gov):
    g = _grant(gov, "commercial")
    with gov.services.db.transaction() as s:
        first = gov.services.pricing.charge_compute(s, g, 2_499_990.0)  # 49,999.80
        second = gov.services.pricing.charge_compute(s, g, 100.0)  # 2.00, only 0.20 left
        third = gov.services.pricing.charge_compute(s, g, 1.0)
    assert first["amount"] == "49999.80" and not first["capped"]
    assert second["amount"] == "0.20" and second["capped"] and "ceiling" in second["basis"]
    assert third["amount"] == "0.00" and third["capped"]
    total = gov.services.pricing.total(g)
    assert total["charged"] == total["ceiling"] == "50000.00" and total["left_under_ceiling"] == "0.00"
    assert sum(f["amount_minor"] for f in gov.services.pricing.fees(g)) == 50000 * 100


def test_a_charge_rolls_back_with_its_transaction(gov):
    g = _grant(gov, "commercial")
    with pytest.raises(RuntimeError):
        with gov.services.db.transaction() as s:
            gov.services.pricing.charge_compute(s, g, 100.0)
            raise RuntimeError("the work failed")
    assert gov.services.pricing.fees(g) == [] and gov.entries("fee.charged") == []


def test_price_lists_are_checked():
    assert price_list("d", None)["commercial"]["ceiling"] is None
    for bad in ({"public_welfare": {"per_query": 1}}, {"commercial": {"per_query": -1}},
                {"commercial": {"per_byte": 1}}, {"currency": "yuan"}, {"discount": 1},
                {"commercial": {"ceiling": "lots"}}):
        with pytest.raises(PolicyInvalid):
            price_list("d", bad)


def test_disclosure_lists_authorisations_products_usage_and_no_private_data(gov):
    app = gov.applications.apply(ANALYST, datasets=["credit"], purpose="score farmers", scenario="rural loans",
                                 epsilon=2.0, days=60, user_type="commercial")
    g = gov.applications.approve(OPERATOR, app["id"])["grant_id"]
    _charge_query(gov, g, "credit", 0.5, digest="SECRET-DIGEST", job="j-42")
    _charge_query(gov, g, "credit", 0.25, digest="other", job="j-42")
    _grant(gov, "public_welfare", datasets=("open_stats",), analyst="bob", purpose="village statistics")
    refused = gov.applications.apply(OTHER, datasets=["credit"], purpose="p", scenario="s", epsilon=None,
                                     days=10, user_type="public_welfare")
    gov.applications.refuse(OPERATOR, refused["id"], "not needed")

    report = gov.services.disclosure.report()
    auth = report["authorisations"]
    assert [(a["organisation"], a["datasets"], a["purpose"], a["scenario"], a["user_type"], a["approval"])
            for a in auth] == [
        ("Rural Bank", ["credit"], "score farmers", "rural loans", "commercial", "application reviewed"),
        ("Other Bank", ["open_stats"], "village statistics", None, "public_welfare", "granted by the operator"),
    ]
    assert auth[0]["epsilon_granted"] == {"credit": 2.0} and auth[0]["status"] == "active"
    assert auth[0]["until"] and auth[0]["from"]
    products = {p["dataset"]: p for p in report["products"]}
    assert products["credit"]["prices"]["commercial"]["per_epsilon"] == "1500.0"
    assert products["closed"]["prices"].startswith("not offered")
    usage = {u["dataset"]: u for u in report["usage"]}
    assert usage["credit"] == {"dataset": "credit", "answers_released": 2, "jobs": 1, "epsilon_spent": 0.75,
                               "fees": "1129.00"}
    assert usage["open_stats"]["answers_released"] == 0
    assert report["applications"]["submitted"] == 2 and report["applications"]["refused"] == 1
    assert report["applications"]["answered_on_time"] == 2

    rendered = to_json(report) + to_csv_all(report)
    for private in ("ana", "bob", "SECRET-DIGEST", "j-42", "not needed"):
        assert private not in rendered.replace("Rural Bank", "").replace("village", ""), private
    rows = list(csv.DictReader(io.StringIO(to_csv(report, "authorisations"))))
    assert rows[0]["organisation"] == "Rural Bank" and rows[0]["datasets"] == "credit"
    assert json.loads(to_json(report))["usage"] == report["usage"]


def test_csv_defuses_formulas(gov):
    _grant(gov, "public_welfare", purpose="=HYPERLINK(\"http://x\")")
    rows = list(csv.DictReader(io.StringIO(to_csv(gov.services.disclosure.report(), "authorisations"))))
    assert rows[0]["purpose"].startswith("'=")


def test_cli_story(gov):
    """The commands of governance against the same home, as the operator and as the analyst."""
    home = str(gov.root / "home")
    run = CliRunner().invoke

    def cli(*args, user="op", role="operator"):
        result = run(main, ["--home", home, "--user", user, "--role", role, *args])
        assert result.exit_code == 0, result.output
        return result.output

    out = cli("user", "add", "cara", "--role", "analyst", "--org", "Co-op Bank")
    assert "added analyst cara" in out
    out = cli("token", "create", "cara", "--days", "5")
    token = out.splitlines()[0]
    assert token.startswith("sbx_") and "shown once" in out
    assert token not in cli("token", "list") and "cara" in cli("token", "list")
    app = json.loads(cli("--json", "apply", "--dataset", "credit", "--purpose", "p", "--scenario", "s",
                         "--user-type", "commercial", user="cara", role="analyst"))
    assert app["id"] in cli("application", "list")
    cli("application", "ask", app["id"], "--question", "why?")
    cli("application", "reply", app["id"], "--text", "because", user="cara", role="analyst")
    assert "because" in cli("application", "show", app["id"])
    assert "grant g-" in cli("application", "approve", app["id"])
    refused = run(main, ["--home", home, "application", "refuse", app["id"], "--reason", "late"])
    assert refused.exit_code == 1 and "cannot refuse" in refused.output
    assert "Co-op Bank" in cli("disclosure")
    assert cli("disclosure", "--format", "csv", "--section", "usage").startswith("dataset,")
    assert json.loads(cli("disclosure", "--format", "json"))["authorisations"][0]["organisation"] == "Co-op Bank"
    tid = json.loads(cli("--json", "token", "list"))[0]["id"]
    assert "revoked" in cli("token", "revoke", tid)
