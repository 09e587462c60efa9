"""The public disclosure report: who is authorised for what, the products, their prices, usage.

What it shows (decided here, for the public page and `sandbox disclosure`):

* **authorisations**: one row per grant: the *organisation* (never an individual's name: the
  analyst's organisation from the users table, else from the application, else "not stated"),
  datasets, purpose, scenario (from the application, when the grant came from one), user type,
  term (from, until), status, epsilon granted per dataset, and whether it was approved on an
  application (automatically or by review).
* **products**: every catalog dataset: title, provider, openness, grade, and its price list
  (not-open datasets are listed as not offered).
* **usage**: per dataset: answers released (fresh, charged queries; cached repeats are free and
  not counted), distinct jobs that queried it, epsilon spent in total, fees charged; plus the
  compute fees, which belong to no dataset.
* **applications**: how many were submitted, approved, refused, withdrawn, pending, and how
  many answers were on time or late (the 10-working-day rule).

What it never shows: analysts' names, query contents or digests, scripts, outputs, per-analyst
spending or any data value.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select

from sandbox import ledger
from sandbox.applications import Application
from sandbox.catalog import Catalog
from sandbox.db import Database
from sandbox.grants import Grant
from sandbox.pricing import Fee, Pricing, money
from sandbox.users import User

SECTIONS = ("authorisations", "products", "usage", "applications")
NOT_STATED = "(organisation not stated)"


class Disclosure:
    def __init__(self, db: Database, catalog: Catalog, pricing: Pricing) -> None:
        self.db = db
        self.catalog = catalog
        self.pricing = pricing

    def report(self) -> dict[str, Any]:
        with self.db.transaction() as session:
            orgs = {u.name: u.organisation for u in session.scalars(select(User))}
            apps = list(session.scalars(select(Application)))
            by_grant = {a.grant_id: a for a in apps if a.grant_id}
            budgets: dict[str, dict[str, float]] = defaultdict(dict)
            for b in session.scalars(select(ledger.Budget)):
                budgets[b.grant_id][b.dataset] = b.epsilon_total / ledger.EPSILON_UNIT
            authorisations = []
            for g in session.scalars(select(Grant).order_by(Grant.created_at, Grant.id)):
                app = by_grant.get(g.id)
                org = orgs.get(g.analyst) or (app.organisation if app else None) or NOT_STATED
                authorisations.append({
                    "organisation": org,
                    "datasets": g.datasets,
                    "purpose": g.purpose,
                    "scenario": app.scenario if app else None,
                    "user_type": g.user_type,
                    "from": g.created_at.date().isoformat(),
                    "until": g.expires_at.date().isoformat(),
                    "status": g.status(),
                    "epsilon_granted": budgets.get(g.id, {}),
                    "approval": ("automatic (unconditional-open)" if app and app.auto
                                 else "application reviewed" if app else "granted by the operator"),
                })
            names = [r.name for r in self.catalog.list(session)]
            queries = dict(session.execute(
                select(ledger.Charge.dataset, func.count()).group_by(ledger.Charge.dataset)).all())
            jobs = dict(session.execute(
                select(ledger.Charge.dataset, func.count(func.distinct(ledger.Charge.job_id)))
                .where(ledger.Charge.job_id.is_not(None)).group_by(ledger.Charge.dataset)).all())
            spent = dict(session.execute(
                select(ledger.Charge.dataset, func.sum(ledger.Charge.epsilon)).group_by(ledger.Charge.dataset)).all())
            fees = dict(session.execute(
                select(Fee.dataset, func.sum(Fee.amount)).group_by(Fee.dataset)).all())
            products, usage = [], []
            for name in names:
                info = self.catalog.describe(name, session)
                prices: dict[str, Any] | str
                try:
                    prices = ("not offered: the dataset is not open" if info["openness"] == "not_open"
                              else self.pricing.prices(name, session))
                except Exception:  # noqa: BLE001 - a broken price list must not hide the rest
                    prices = "price list invalid: see the dataset's policy"
                products.append({
                    "dataset": name, "title": info["title"], "provider": info["provider"],
                    "openness": info["openness"], "grade": info["grade"], "prices": prices,
                })
                usage.append({
                    "dataset": name,
                    "answers_released": int(queries.get(name, 0)),
                    "jobs": int(jobs.get(name, 0)),
                    "epsilon_spent": int(spent.get(name) or 0) / ledger.EPSILON_UNIT,
                    "fees": money(int(fees.get(name) or 0)),
                })
            compute_fees = money(int(fees.get(None) or 0))
            states = Counter(a.state for a in apps)
            decided = [a for a in apps if a.state in ("approved", "refused") and not a.auto]
            summary = {
                "submitted": len(apps),
                "approved": states["approved"], "approved_automatically": sum(1 for a in apps if a.auto),
                "refused": states["refused"], "withdrawn": states["withdrawn"],
                "pending": states["submitted"] + states["info_requested"],
                "answered_on_time": sum(1 for a in decided if not a.late),
                "answered_late": sum(1 for a in decided if a.late),
            }
        return {
            "generated_at": datetime.now(timezone.utc).isoformat(),
            "authorisations": authorisations,
            "products": products,
            "usage": usage,
            "compute_fees": compute_fees,
            "applications": summary,
        }


# -- renderings ---------------------------------------------------------------------------


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False)


def _cell(value: Any) -> str:
    """One CSV cell; text that a spreadsheet would run as a formula is defused with a quote."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        text = "; ".join(map(str, value))
    elif isinstance(value, dict):
        text = "; ".join(f"{k}={v}" for k, v in value.items())
    else:
        text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _flat_products(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for p in report["products"]:
        prices = p["prices"]
        row = {k: p[k] for k in ("dataset", "title", "provider", "openness", "grade")}
        if isinstance(prices, dict):
            row.update({"currency": prices["currency"], "public_welfare": prices["public_welfare"],
                        **{f"commercial_{k}": v for k, v in prices["commercial"].items()}})
        else:
            row["public_welfare"] = prices
        rows.append(row)
    return rows


def section_rows(report: dict[str, Any], section: str) -> list[dict[str, Any]]:
    if section == "authorisations":
        return report["authorisations"]
    if section == "products":
        return _flat_products(report)
    if section == "usage":
        return report["usage"] + [{"dataset": "(compute, all datasets)", "fees": report["compute_fees"]}]
    if section == "applications":
        return [report["applications"]]
    raise ValueError(section)


def to_csv(report: dict[str, Any], section: str) -> str:
    """One section as CSV (header row first)."""
    rows = section_rows(report, section)
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue()


def to_csv_all(report: dict[str, Any]) -> str:
    """Every section, each headed by a ``# section`` line and separated by a blank line."""
    return "\n".join(f"# {s}\n{to_csv(report, s)}" for s in SECTIONS)
