"""The public (no sign-in): catalog, a dataset's page, the disclosure page in Chinese, the
language switch, phone width."""
from __future__ import annotations

import json

from tests.web.conftest import Site, shot


def test_public_reads_the_disclosure_page_in_chinese(site: Site) -> None:
    ctx = site.context("zh")
    page = ctx.new_page()
    page.goto("/disclosure")
    assert page.locator("h1").inner_text() == "信息公开"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    auth = page.locator("#authorisations")
    assert "Henan Agricultural University" in auth.inner_text()  # the organisation, never the user
    assert "bob" not in auth.inner_text()
    assert "公益用途" in auth.inner_text()
    products = page.locator("#products").inner_text()
    assert "有条件开放" in products and "¥800.00" in products  # every amount with its currency
    assert "¥" in page.locator("#usage").inner_text()
    assert page.locator("#usage tbody tr").count() == 4  # three datasets and compute
    shot(page, "disclosure-zh")
    csv = page.request.get("/disclosure.csv")
    assert csv.ok and csv.headers["content-type"].startswith("text/csv")
    assert "# authorisations" in csv.text() and "Henan Agricultural University" in csv.text()
    report = json.loads(page.request.get("/disclosure.json").text())
    assert {p["dataset"] for p in report["products"]} == {"farmers", "utility_payments", "loan_defaults"}
    page.click("#lang-en")
    assert page.locator("h1").inner_text() == "Public disclosure"
    assert "CN¥2.00 per query" in page.locator("#products").inner_text()
    assert "CN¥0.00" in page.locator("#usage").inner_text()
    shot(page, "disclosure-en")
    ctx.close()


def test_catalog_search_filters_and_dataset_page_in_both_languages(site: Site) -> None:
    ctx = site.context("en")
    page = ctx.new_page()
    page.goto("/catalog")
    assert page.locator("li.dataset").count() == 3
    shot(page, "catalog-en")
    page.fill("#q", "electricity")
    page.click("#filter")
    titles = page.locator("li.dataset h2").all_inner_texts()
    assert len(titles) == 1 and "utility_payments" in titles[0]
    page.goto("/catalog")
    page.select_option("#grade", "general-3")
    page.click("#filter")
    assert [t.split()[-1] for t in page.locator("li.dataset h2").all_inner_texts()] == ["farmers"]
    page.click("li.dataset h2 a")
    assert page.url.endswith("/catalog/farmers")
    schema = page.locator("table.schema").inner_text()
    assert "income_yuan" in schema and "sensitive" in schema and "300,000" in schema
    assert "Fugou" in schema  # categories
    assert 'sdk.dataset("farmers")' in page.locator("#example").inner_text()
    assert "Henan Agricultural University" in page.locator("#holders").inner_text()
    # Which columns allow a histogram, and the privacy rules, with plurals and currencies right.
    assert "7 bins: 18 · 30" in page.locator("tr[data-column=age] td.bins").inner_text()
    assert "no histogram" in page.locator("tr[data-column=household_size] td.bins").inner_text()
    policy = page.locator("#policy").inner_text()
    assert "at most 1 row per person" in policy and "histogram" in policy and "below 20" in policy
    assert "at most 1" in policy and "epsilon 4 per dataset" in policy
    prices = page.locator("#prices").inner_text()
    assert "Public welfare: free" in prices and "CN¥800.00 per unit of epsilon" in prices
    assert "CN¥50,000.00 per grant" in prices and " ;" not in prices
    assert "UTC+8" in page.locator("#facts").inner_text()  # times say their zone
    assert page.locator("#mock-download").count() == 0  # mock data is for signed-in users
    shot(page, "dataset-en")
    # The switch is remembered: later pages stay in Chinese.
    page.click("#lang-zh")
    assert page.locator("h2", has_text="数据结构").count() == 1
    assert "敏感" in page.locator("table.schema").inner_text()
    assert "7 个分箱" in page.locator("tr[data-column=age] td.bins").inner_text()
    assert "每人至多 1 行" in page.locator("#policy").inner_text()
    assert "¥50,000.00" in page.locator("#prices").inner_text()
    assert "2026年" in page.locator("#facts").inner_text() or "年" in page.locator("#facts").inner_text()
    shot(page, "dataset-zh")
    page.goto("/catalog")
    assert page.locator("h1").inner_text() == "数据目录"
    shot(page, "catalog-zh")
    page.goto("/")
    shot(page, "index-zh")
    ctx.close()


def test_phone_width_navigation_is_usable(site: Site) -> None:
    ctx, page = site.signed_in("op", "zh", viewport={"width": 390, "height": 844}, is_mobile=True,
                               has_touch=True)
    page.goto("/catalog")
    links = page.locator("nav.nav a")
    assert links.count() == 6  # catalog, applications, grants, jobs, audit, disclosure
    for i in range(links.count()):
        box = links.nth(i).bounding_box()
        assert box is not None and links.nth(i).is_visible()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, links.nth(i).inner_text()
        assert box["height"] >= 24  # big enough to tap
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    shot(page, "phone-catalog-zh")
    page.locator("nav.nav a", has_text="信息公开").tap()
    page.wait_for_url("**/disclosure")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "phone-disclosure-zh")
    page.goto("/applications")
    shot(page, "phone-applications-zh")
    ctx.close()
