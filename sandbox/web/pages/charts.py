"""Server-side SVG: DP estimates with their 95% intervals as error bars, and budget gauges.

No JavaScript and no chart library: the browser gets finished SVG. Every label is escaped.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from markupsafe import Markup, escape

BAR = "#4c78a8"
WHISKER = "#222"


def aggregates_of(columns: list[str]) -> list[str]:
    """The statistics of an answer: columns that come with ``_ci_low`` and ``_ci_high``."""
    names = set(columns)
    return [c for c in columns if f"{c}_ci_low" in names and f"{c}_ci_high" in names]


def keys_of(columns: list[str]) -> list[str]:
    stats = aggregates_of(columns)
    derived = {s for s in stats} | {f"{s}_ci_low" for s in stats} | {f"{s}_ci_high" for s in stats}
    return [c for c in columns if c not in derived]


def table(answer: dict) -> dict:
    """Rows ready for a table: keys, then each statistic with its interval."""
    columns = answer.get("columns") or []
    stats, keys = aggregates_of(columns), keys_of(columns)
    at = {c: i for i, c in enumerate(columns)}
    rows = []
    for row in answer.get("rows") or []:
        rows.append({
            "keys": [row[at[k]] for k in keys],
            "stats": [(row[at[s]], row[at[f"{s}_ci_low"]], row[at[f"{s}_ci_high"]]) for s in stats],
        })
    return {"keys": keys, "stats": stats, "rows": rows}


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def error_bars(title: str, labels: list[str], values: list[Any], lows: list[Any], highs: list[Any],
               fmt: Callable[[Any], str], caption: str) -> Markup:
    """Horizontal bars of the estimates with whiskers from the interval's low to high end."""
    points = [(str(lab), v, lo, hi) for lab, v, lo, hi in zip(labels, values, lows, highs) if v is not None]
    if not points:
        return Markup("")
    low = min([0.0] + [float(lo if lo is not None else v) for _, v, lo, _h in points])
    high = max([float(hi if hi is not None else v) for _, v, _l, hi in points] + [0.0])
    ticks = _nice_ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    left, right, top, band = 150, 620, 34, 26
    height = top + band * len(points) + 34
    width = 640

    def x(v: float) -> float:
        return left + (float(v) - low) / ((high - low) or 1) * (right - left)

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg" '
           f'aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>',
           f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>']
    base = top + band * len(points)
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{base}" class="grid"/>')
        out.append(f'<text x="{x(t):.1f}" y="{base + 16}" text-anchor="middle" class="tick">{escape(fmt(t))}</text>')
    zero = x(0.0)
    for i, (lab, v, lo, hi) in enumerate(points):
        y = top + band * i
        shown = lab if len(lab) <= 20 else lab[:19] + "…"
        out.append(f'<text x="{left - 8}" y="{y + band / 2 + 4:.1f}" text-anchor="end" class="label">{escape(shown)}</text>')
        x0, x1 = sorted((zero, x(v)))
        out.append(f'<rect x="{x0:.1f}" y="{y + 5}" width="{max(x1 - x0, 1):.1f}" height="{band - 10}" fill="{BAR}">'
                   f'<title>{escape(lab)}: {escape(fmt(v))} [{escape(fmt(lo))}, {escape(fmt(hi))}]</title></rect>')
        if lo is not None and hi is not None:
            mid = y + band / 2
            out.append(f'<line x1="{x(lo):.1f}" y1="{mid}" x2="{x(hi):.1f}" y2="{mid}" stroke="{WHISKER}" stroke-width="1.5"/>')
            for end in (lo, hi):
                out.append(f'<line x1="{x(end):.1f}" y1="{mid - 6}" x2="{x(end):.1f}" y2="{mid + 6}" '
                           f'stroke="{WHISKER}" stroke-width="1.5"/>')
    out.append(f'<text x="{left}" y="{height - 4}" class="tick">{escape(caption)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def answer_charts(answer: dict, fmt: Callable[[Any], str], caption: str) -> list[Markup]:
    """One chart per statistic of an answer (at most 40 groups each, to stay readable)."""
    t = table(answer)
    if not t["rows"]:
        return []
    labels = [" / ".join("—" if k is None else str(k) for k in r["keys"]) or "all" for r in t["rows"]][:40]
    charts = []
    for i, stat in enumerate(t["stats"]):
        values = [r["stats"][i][0] for r in t["rows"]][:40]
        lows = [r["stats"][i][1] for r in t["rows"]][:40]
        highs = [r["stats"][i][2] for r in t["rows"]][:40]
        chart = error_bars(stat, labels, values, lows, highs, fmt, caption)
        if chart:
            charts.append(chart)
    return charts


def gauge(spent: float, total: float, fmt: Callable[[Any], str], spent_label: str, left_label: str) -> Markup:
    """A budget bar: spent (dark) and left (light), with both numbers."""
    share = 0.0 if total <= 0 else max(0.0, min(1.0, spent / total))
    w = 300
    return Markup(
        f'<svg class="gauge" viewBox="0 0 {w} 34" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="{escape(spent_label)} {escape(fmt(spent))} / {escape(fmt(total))}">'
        f'<rect x="0" y="0" width="{w}" height="16" rx="3" fill="#d9e6f2"/>'
        f'<rect x="0" y="0" width="{w * share:.1f}" height="16" rx="3" fill="{"#c0392b" if share > 0.9 else BAR}"/>'
        f'<text x="0" y="30" class="tick">{escape(spent_label)} {escape(fmt(spent))}</text>'
        f'<text x="{w}" y="30" text-anchor="end" class="tick">{escape(left_label)} {escape(fmt(total - spent))}</text>'
        "</svg>"
    )
