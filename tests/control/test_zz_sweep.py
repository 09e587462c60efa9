"""Last: the canary planted in a farmer's name is nowhere a user, a reviewer or the database can see,
and nothing SQLite-specific leaks out of ``sandbox/db.py`` (PostgreSQL works by URL)."""
from __future__ import annotations

import ast

from sqlalchemy import select

from sandbox.db import Base

from .conftest import CANARY, REPO, SEEN, World


def test_canary_in_no_output_no_table_no_file(world: World) -> None:
    assert len(SEEN) > 100, "the other tests record what they saw"
    assert not [text for text in SEEN if CANARY in text]
    with world.services.db.transaction() as s:  # every table: answers, audit, grants, ledger, catalog
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                assert CANARY not in repr(tuple(row)), table.name
    needle = CANARY.encode("utf-8")
    for path in world.root.rglob("*"):
        # logs/ is the operator's own: an engine failure's traceback may quote data there (by design)
        if path.is_file() and "logs" not in path.relative_to(world.root).parts:
            assert needle not in path.read_bytes(), path  # the vault is encrypted, the database holds no data


# What only SQLite understands. ``sandbox/db.py`` is where it belongs; ``home.py`` names the default URL.
SQLITE_ONLY = ("pragma", "begin immediate", "insert or ", "julianday", "sqlite:///", "datetime('now')",
               "autoincrement", "without rowid")
ALLOWED = {"sandbox/db.py", "sandbox/home.py"}


def _code_strings(tree: ast.AST) -> list[str]:
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_nothing_sqlite_specific_outside_db_py() -> None:
    leaks = []
    for path in sorted((REPO / "sandbox").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] == "sqlite3" or "dialects.sqlite" in n for n in names):
                    leaks.append(f"{rel}: imports {names}")
        for text in _code_strings(tree):
            low = text.lower()
            leaks += [f"{rel}: {text!r}" for word in SQLITE_ONLY if word in low]
    assert leaks == []
