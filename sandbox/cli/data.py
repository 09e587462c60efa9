"""Commands of the data domain: datasets, grants, queries and budgets."""
from __future__ import annotations

import json
from pathlib import Path

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
    columns = [
        {**c, "bounds": c.get("bounds") or "", "categories": ", ".join(map(str, c.get("categories") or []))}
        for c in info["columns"]
    ]
    state.emit(info, head + "\n\n" + table(columns, ["name", "type", "tag", "bounds", "categories"]))


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
    items = state.backend.grants(analyst)
    rows = [{**g, "datasets": ",".join(g["datasets"]), "expires_at": g["expires_at"][:10]} for g in items]
    state.emit(items, table(rows, ["id", "analyst", "datasets", "status", "expires_at", "purpose"]))


@grant.command("show")
@click.argument("grant_id")
@click.pass_obj
def grant_show(state: State, grant_id: str) -> None:
    info = state.backend.grant(grant_id)
    head = fields(info, ("id", "analyst", "purpose", "user_type", "status", "expires_at"))
    state.emit(info, head + "\n\n" + _budget_table(info["budgets"]))


@grant.command("revoke")
@click.argument("grant_id")
@click.option("--reason", required=True)
@click.pass_obj
def grant_revoke(state: State, grant_id: str, reason: str) -> None:
    info = state.backend.revoke_grant(grant_id, reason)
    state.emit(info, f"grant {grant_id} revoked; running jobs on it are refused from now on")


@grant.command("extend")
@click.argument("grant_id")
@click.option("--days", required=True, type=click.IntRange(1, 3650))
@click.pass_obj
def grant_extend(state: State, grant_id: str, days: int) -> None:
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


def render_answer(answer: dict) -> str:
    """An answer as a table of estimates with their 95% intervals, then its cost."""
    rows = [dict(zip(answer["columns"], row)) for row in answer["rows"]]
    shown = [{k: (f"{v:,.2f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    lines = [("MOCK (not real data)\n" if answer.get("mock") else "") + table(shown, answer["columns"])]
    if answer.get("suppressed_groups"):
        lines.append(f"{answer['suppressed_groups']} group(s) suppressed: noisy count below the policy's minimum")
    cost = "free (answered before)" if answer.get("cached") else f"epsilon {answer.get('epsilon_charged', 0):g}"
    lines.append(f"charged: {cost}")
    if answer.get("budget_left"):
        lines.append(f"budget left: epsilon {answer['budget_left']['epsilon']:g}")
    return "\n".join(lines)


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
                         f"budget left epsilon {info['budget_left']['epsilon']:g}")
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
