"""The public disclosure report: authorisations (by organisation), products, prices, usage."""
from __future__ import annotations

from apiflask import APIBlueprint
from flask import Response

from sandbox import disclosure
from sandbox.web.auth import requires, services
from sandbox.web.schemas import DisclosureArgs, query

bp = APIBlueprint("disclosure", __name__, tag="disclosure")


@bp.get("/disclosure")
@requires("public")
@query(bp, DisclosureArgs)
@bp.doc(responses={200: {"description": "the report as JSON, or CSV with format=csv",
                         "content": {"application/json": {"schema": {"type": "object"}},
                                     "text/csv": {"schema": {"type": "string"}}}}})
def disclosure_report(args: dict):  # type: ignore[no-untyped-def]
    """Who is authorised for what, the products and prices, and usage; no names, queries or data."""
    report = services().disclosure.report()
    if args["format"] == "csv":
        section = args.get("section")
        text = disclosure.to_csv(report, section) if section else disclosure.to_csv_all(report)
        return Response(text, mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="disclosure-{section or "all"}.csv"'})
    if args.get("section"):
        return {args["section"]: report[args["section"]]}
    return report
