"""Plain-text rendering of command output for a terminal (``--json`` prints the payload instead)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain text table; good enough for a terminal, no dependency."""
    if not rows:
        return "(none)"
    cells = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def fields(info: Mapping[str, Any], keys: Iterable[str]) -> str:
    """One ``key: value`` line per key, in the order given: the head of every ``show``."""
    return "\n".join(f"{k}: {info[k]}" for k in keys)
