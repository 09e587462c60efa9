"""Commands of the data domain: datasets, grants, queries and budgets."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import click

from sandbox.cli.root import State
from sandbox.cli.text import fields, table
from sandbox.errors import InvalidInput


# -- datasets -------------------------------------------------------------------------------


@click.group()
def dataset() -> None:
    """Register datasets and read their public metadata."""


@dataset.command("add")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="Name of the dataset (as declared in the policy file).")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False), help="Policy YAML file.")
@click.option("--replace", is_flag=True, help="Store a new version of an existing dataset.")
@click.pass_obj
def dataset_add(state: State, path: str, name: str, policy_path: str, replace: bool) -> None:
    """Encrypt PATH (CSV or Parquet) into the vault under NAME, checked against its policy."""
    info = state.backend.add_dataset(Path(path), name, Path(policy_path), replace)
    notes = "".join(f"\n  warning: {w}" for w in info["warnings"])
    state.emit(info, f"added dataset {name} version {info['version'][:12]} (encrypted in the vault){notes}")


@dataset.command("list")
@click.pass_obj
def dataset_list(state: State) -> None:
    """Every dataset in the catalog, public metadata only."""
    items = state.backend.datasets()
    rows = [{**d, "version": d["version"][:12]} for d in items]
    state.emit(items, table(rows, ["name", "title", "openness", "grade", "provider", "version"]))


@dataset.command("show")
@click.argument("name")
@click.pass_obj
def dataset_show(state: State, name: str) -> None:
    """One dataset's public metadata: schema, tags, bounds, grade, openness."""
    info = state.backend.dataset(name)
    head = fields(info, (k for k in ("name", "title", "provider", "topic", "openness", "grade", "version")
                         if k in info))
    unit = info["privacy_unit"]
    rules = "\n".join([
        f"privacy unit: {unit['column']} (at most {unit['max_rows']} row(s) per person)",
        f"operations: {', '.join(info['allowed_operations'])}",
        f"epsilon: at most {info['max_epsilon_per_query']:g} per query, {info['default_epsilon_budget']:g} "
        f"per grant by default; delta {info['delta']:g}",
        f"groups with a noisy count below {info['min_release_count']:g} are not released",
    ])
    columns = [
        {**c, "bounds": c.get("bounds") or "", "categories": ", ".join(map(str, c.get("categories") or [])),
         "histogram bins": " ".join(f"{b:g}" for b in c.get("bins") or [])}
        for c in info["columns"]
    ]
    state.emit(info, "\n\n".join([
        head, (info.get("description") or "").strip(), rules,
        table(columns, ["name", "type", "tag", "bounds", "categories", "histogram bins"]),
    ]))


@dataset.command("mock")
@click.argument("name")
@click.option("--rows", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False))
@click.pass_obj
def dataset_mock(state: State, name: str, rows: int, seed: int, output: str) -> None:
    """Write mock rows made from the public schema only (no real data is read)."""
    frame = state.backend.mock_frame(name, rows, seed)
    if output.endswith(".parquet"):
        frame.write_parquet(output)
    else:
        frame.write_csv(output)
    state.emit({"output": output, "rows": rows}, f"wrote {rows} MOCK rows of {name} to {output}")


# -- grants ---------------------------------------------------------------------------------


@click.group()
def grant() -> None:
    """Create, inspect, extend and revoke grants."""


@grant.command("create")
@click.option("--analyst", required=True)
@click.option("--dataset", "datasets", required=True, multiple=True, help="Repeat for several datasets.")
@click.option("--epsilon", type=float, help="Privacy budget on each dataset (default: each policy's).")
@click.option("--days", default=90, show_default=True, type=int, help="Term of the grant.")
@click.option("--purpose", required=True)
@click.option("--user-type", type=click.Choice(["public_welfare", "commercial"]), default="public_welfare")
@click.option("--columns", help="Comma-separated columns the grant is limited to (default: all allowed).")
@click.option("--operations", help="Comma-separated operations (default: what the policy allows).")
@click.pass_obj
def grant_create(
    state: State, analyst: str, datasets: tuple[str, ...], epsilon: float | None, days: int, purpose: str,
    user_type: str, columns: str | None, operations: str | None,
) -> None:
    """Grant ANALYST a budget on datasets for a purpose and a term."""
    made = state.backend.create_grant(
        analyst=analyst, datasets=list(datasets), epsilon=epsilon, days=days,
        purpose=purpose, user_type=user_type,
        columns=_split(columns), operations=_split(operations),
    )
    state.emit(made, f"grant {made['id']} for {analyst} on {', '.join(made['datasets'])} "
                     f"until {made['expires_at'][:10]}")


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@grant.command("list")
@click.option("--analyst")
@click.pass_obj
def grant_list(state: State, analyst: str | None) -> None:
    """Grants: analyst, datasets, status, expiry, purpose."""
    items = state.backend.grants(analyst)
    rows = [{**g, "datasets": ",".join(g["datasets"]), "expires_at": g["expires_at"][:10]} for g in items]
    state.emit(items, table(rows, ["id", "analyst", "datasets", "status", "expires_at", "purpose"]))


@grant.command("show")
@click.argument("grant_id")
@click.pass_obj
def grant_show(state: State, grant_id: str) -> None:
    """One grant, with the budget granted, spent and left on each dataset."""
    info = state.backend.grant(grant_id)
    head = fields(info, ("id", "analyst", "purpose", "user_type", "status", "expires_at"))
    state.emit(info, head + "\n\n" + _budget_table(info["budgets"]))


@grant.command("revoke")
@click.argument("grant_id")
@click.option("--reason", required=True)
@click.pass_obj
def grant_revoke(state: State, grant_id: str, reason: str) -> None:
    """Revoke a grant: its queries and jobs are refused from now on."""
    info = state.backend.revoke_grant(grant_id, reason)
    state.emit(info, f"grant {grant_id} revoked; running jobs on it are refused from now on")


@grant.command("extend")
@click.argument("grant_id")
@click.option("--days", required=True, type=click.IntRange(1, 3650))
@click.pass_obj
def grant_extend(state: State, grant_id: str, days: int) -> None:
    """Extend a grant's term by a number of days (also an expired one)."""
    info = state.backend.extend_grant(grant_id, days)
    state.emit(info, f"grant {grant_id} now expires {info['expires_at'][:10]}")


# -- queries and budgets --------------------------------------------------------------------


def _budget_table(budgets: list[dict]) -> str:
    rows = [
        {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in b.items()}
        for b in budgets
    ]
    return table(rows, ["dataset", "epsilon_total", "epsilon_spent", "epsilon_left", "delta_left"])


def _read_query(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"no query file {path}", "pass the path of a JSON query file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        line = getattr(err, "lineno", "?")
        raise InvalidInput(f"{path} is not valid JSON (line {line})", "see docs/queries.md for the format") from None


def _number_formats(columns: list[str], rows: list[dict]) -> dict[str, Callable[[Any], str]]:
    """How each value column is printed; one rule for an estimate and its two interval bounds.

    An aggregate whose estimates are all integers (counts, histogram counts, sums of integer
    columns) is printed as integers, its bounds rounded outwards (floor the low, ceil the high:
    the interval printed contains the one computed); any other aggregate with 2 decimals. Both
    with thousands separators; a missing value prints empty.
    """
    def whole(round_to: Callable[[float], int]) -> Callable[[Any], str]:
        return lambda v: f"{round_to(v):,}"

    def decimals(v: Any) -> str:
        return f"{v:,.2f}"

    formats: dict[str, Callable[[Any], str]] = {}
    for name in columns:
        if f"{name}_ci_low" not in columns or f"{name}_ci_high" not in columns:
            continue
        values = [r.get(name) for r in rows if r.get(name) is not None]
        integers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        formats[name] = whole(round) if integers else decimals
        formats[f"{name}_ci_low"] = whole(math.floor) if integers else decimals
        formats[f"{name}_ci_high"] = whole(math.ceil) if integers else decimals
    return formats


def render_answer(answer: dict) -> str:
    """An answer as a table of estimates with their 95% intervals, then its cost.

    Numbers follow ``_number_formats``: integer aggregates as integers, others with 2 decimals.
    """
    rows = [dict(zip(answer["columns"], row)) for row in answer["rows"]]
    formats = _number_formats(answer["columns"], rows)
    shown = [
        {k: ("" if v is None else formats[k](v) if k in formats and isinstance(v, (int, float))
             and not isinstance(v, bool) else v) for k, v in r.items()}
        for r in rows
    ]
    lines = [("MOCK (not real data)\n" if answer.get("mock") else "") + table(shown, answer["columns"])]
    minimum = (answer.get("mechanism") or {}).get("min_release_count")
    why = "noisy count below the policy's minimum" + (f" of {minimum}" if minimum is not None else "")
    if answer.get("suppressed_groups"):
        lines.append(f"{answer['suppressed_groups']} group(s) suppressed (not released): {why}")
    if answer.get("suppressed_bins"):
        lines.append(f"{answer['suppressed_bins']} histogram bin(s) suppressed (not released): {why}")
    cost = "free (answered before)" if answer.get("cached") else f"epsilon {answer.get('epsilon_charged', 0):g}"
    lines.append(f"charged: {cost}")
    if answer.get("budget_left"):
        lines.append(f"budget left: epsilon {answer['budget_left']['epsilon']:g}")
    return "\n".join(lines)


def _statistic(key: str) -> str:
    """A statistic's key (``count:``, ``sum:income``, ``quantile:income:0.5``) in words."""
    op, _, rest = key.partition(":")
    column, _, q = rest.partition(":")
    if op == "quantile" and q:
        return f"quantile {q} of {column}"
    return f"{op} of {column}" if column else op


def _render_accuracy(accuracy: dict) -> str:
    """The preview's accuracy: each statistic's epsilon and the half-width of its 95% interval."""
    if not accuracy:
        return ""
    rows = []
    for key, stat in accuracy.items():
        width = stat.get("ci95_half_width")
        if key.startswith("quantile:"):
            shown = "grid step only (see docs/queries.md)"
        else:
            shown = "" if width is None else f"± {width:,.2f}"
        rows.append({"statistic": _statistic(key), "epsilon": f"{stat.get('epsilon', 0):.4g}",
                     "95% interval": shown})
    return ("\naccuracy (before any data is read; a mean combines its count and sum):\n"
            + table(rows, ["statistic", "epsilon", "95% interval"]))


@click.command()
@click.argument("query_file", type=click.Path(dir_okay=False))
@click.option("--grant", "grant_id", required=True)
@click.option("--preview", is_flag=True, help="Show the cost and accuracy without spending anything.")
@click.pass_obj
def query(state: State, query_file: str, grant_id: str, preview: bool) -> None:
    """Ask one DP query (a JSON file, see docs/queries.md) under a grant."""
    doc = _read_query(query_file)
    if preview:
        info = state.backend.preview(grant_id, doc)
        state.emit(info, f"would cost epsilon {info['epsilon']:g}, delta {info['delta']:g}"
                         f"{' (free: asked before)' if info['cached'] else ''}; "
                         f"budget left epsilon {info['budget_left']['epsilon']:g}"
                         + _render_accuracy(info.get("accuracy") or {}))
        return
    answer = state.backend.ask(grant_id, doc)
    state.emit(answer, render_answer(answer))


@click.command()
@click.option("--grant", "grant_id", required=True)
@click.pass_obj
def budget(state: State, grant_id: str) -> None:
    """Budget granted, spent and left on each dataset of a grant."""
    budgets = state.backend.grant(grant_id)["budgets"]
    state.emit(budgets, _budget_table(budgets))
