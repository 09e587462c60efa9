"""The public disclosure page (no sign-in): authorisations, products and prices, usage;
downloadable as CSV and JSON (the same report as ``GET /api/v1/disclosure``)."""
from __future__ import annotations

from flask import Response, abort, render_template

from sandbox import disclosure as report_module
from sandbox.web.pages import bp, services


def currencies(report: dict) -> dict:
    """The currency of each dataset's fees (its price list's), and ``None`` for the compute fees:
    the one currency all the price lists share (CNY when there is none or they differ)."""
    out = {p["dataset"]: p["prices"]["currency"] for p in report["products"] if isinstance(p["prices"], dict)}
    shared = set(out.values())
    return {**out, None: shared.pop() if len(shared) == 1 else "CNY"}


@bp.get("/disclosure")
def disclosure():  # type: ignore[no-untyped-def]
    report = services().disclosure.report()
    return render_template("pages/disclosure.html", r=report, currency=currencies(report))


@bp.get("/disclosure.<fmt>")
def disclosure_download(fmt: str):  # type: ignore[no-untyped-def]
    report = services().disclosure.report()
    if fmt == "json":
        return Response(report_module.to_json(report), mimetype="application/json",
                        headers={"Content-Disposition": 'attachment; filename="disclosure.json"'})
    if fmt == "csv":
        # UTF-8 with a byte-order mark, so spreadsheet programs read the Chinese text correctly
        return Response("\ufeff" + report_module.to_csv_all(report), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="disclosure.csv"'})
    abort(404)
