"""``sandbox audit``: verify, read and export the audit log (reviewers and auditors)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from sandbox.cli.root import State
from sandbox.cli.text import table


@click.group()
def audit() -> None:
    """Verify, read and export the append-only audit log."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Recompute every entry hash and checkpoint root; check signatures and the checkpoint file."""
    state: State = ctx.obj
    payload = state.backend.audit_verify()
    if payload["ok"]:
        state.emit(payload, f"audit verify: OK ({payload['entries']} entries, {payload['checkpoints']} checkpoints)")
        return
    state.emit(payload, "\n".join([f"audit verify: FAILED ({len(payload['problems'])} problems)"]
                                  + [f"  {p}" for p in payload["problems"]]))
    ctx.exit(1)


def _brief(entry: dict) -> dict:
    return {**entry, "time": entry["time"][:19] + "Z",
            "objects": json.dumps(entry["objects"], ensure_ascii=False, separators=(",", ":")),
            "grant_id": entry["grant_id"] or "", "checkpoint": entry["checkpoint"] or "-"}


@audit.command("show")
@click.option("--last", type=click.IntRange(min=0), default=20, show_default=True, help="Most recent N entries.")
@click.option("--action", help="Only this action, e.g. query.answered.")
@click.option("--actor", help="Only this actor.")
@click.option("--grant", "grant_id", help="Only entries under this grant.")
@click.option("--dataset", help="Only entries about this dataset.")
@click.option("--since", help="From this UTC time (ISO-8601), inclusive.")
@click.option("--until", help="Up to this UTC time (ISO-8601), exclusive.")
@click.pass_obj
def audit_show(state: State, last: int, action: str | None, actor: str | None, grant_id: str | None,
               dataset: str | None, since: str | None, until: str | None) -> None:
    """List entries (with the checkpoint each landed in), oldest first."""
    entries = state.backend.audit_entries(last=last, action=action, actor=actor, grant_id=grant_id,
                                           dataset=dataset, since=since, until=until)
    columns = ["seq", "time", "actor", "role", "action", "outcome", "objects", "grant_id", "checkpoint"]
    state.emit(entries, table([_brief(e) for e in entries], columns))


@audit.command("entry")
@click.argument("seq", type=click.IntRange(min=0))
@click.pass_obj
def audit_entry(state: State, seq: int) -> None:
    """One entry in full, with its inclusion proof against the latest checkpoint."""
    entry = state.backend.audit_entry(seq)
    state.emit(entry, json.dumps(entry, indent=2, ensure_ascii=False))


@audit.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.pass_obj
def audit_export(state: State, out_dir: str) -> None:
    """Write entries, signed checkpoints and the public key to OUT_DIR for offline verification."""
    counts = state.backend.audit_export(Path(out_dir))
    state.emit({"folder": out_dir, **counts},
               f"exported {counts['entries']} entries and {counts['checkpoints']} checkpoints to {out_dir}\n"
               "  verify them with the program in docs/audit.md")
