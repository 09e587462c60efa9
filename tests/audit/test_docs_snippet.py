"""The verification program printed in docs/audit.md, run as-is against real exports."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.audit import AuditLog
from sandbox.errors import AlreadyExists

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


@pytest.fixture
def snippet(tmp_path: Path) -> Path:
    match = re.search(r"<!-- verify-snippet -->\s*```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert match, "docs/audit.md lost its verification snippet"
    path = tmp_path / "verify_audit.py"
    path.write_text(match.group(1), "utf-8")
    return path


def run(snippet: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(snippet), str(folder)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def exported(audit: AuditLog, tmp_path: Path) -> Path:
    for i in range(11):
        audit.append(actor="李雷", role="analyst", action="query", objects={"dataset": "payments"},
                     grant_id="g-1", purpose="credit scoring", details={"query": {"op": "count"},
                     "epsilon": 0.1, "odd": "line\u2028separator"})
    audit.checkpoint()
    out = tmp_path / "export"
    audit.export(out)
    return out


def test_export_lines_are_the_hashed_bytes(audit: AuditLog, exported: Path) -> None:
    lines = (exported / "entries.jsonl").read_bytes().split(b"\n")[:-1]
    assert [json.loads(x)["seq"] for x in lines] == list(range(11))
    assert "李雷".encode() in lines[0]
    with pytest.raises(AlreadyExists):
        audit.export(exported)


def test_snippet_verifies_a_real_export(snippet: Path, exported: Path) -> None:
    result = run(snippet, exported)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 11 entries, 3 checkpoints")


def test_snippet_detects_an_edited_entry(snippet: Path, exported: Path) -> None:
    path = exported / "entries.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"epsilon":0.1', b'"epsilon":0.01', 1))
    result = run(snippet, exported)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["checkpoint 4: root mismatch", "checkpoint 8: root mismatch",
                                          "checkpoint 11: root mismatch"]


def test_snippet_detects_a_truncated_export_and_a_forged_checkpoint(snippet: Path, exported: Path) -> None:
    entries = exported / "entries.jsonl"
    entries.write_bytes(b"".join(x + b"\n" for x in entries.read_bytes().split(b"\n")[:9]))
    checkpoints = exported / "checkpoints.jsonl"
    cps = [json.loads(x) for x in checkpoints.read_text().splitlines()]
    cps[0]["root"] = "00" * 32
    checkpoints.write_text("".join(json.dumps(cp) + "\n" for cp in cps))
    out = run(snippet, exported).stdout.splitlines()
    assert "checkpoint 4: bad signature" in out and "checkpoint 4: root mismatch" in out
    assert "checkpoint 11: the export has only 9 entries" in out
