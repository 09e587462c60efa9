"""Checking a log against its signed checkpoints, naming exactly what is wrong.

Pure: takes the rows as read from the database, the checkpoints from the database and
from the file, and the public key; returns every problem found. Each problem names the
entry (by seq) or the checkpoint (by size) and says how it is wrong, so a reviewer knows
where to look.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sandbox.audit import merkle
from sandbox.audit.canonical import canonical_bytes
from sandbox.audit.signing import CHECKPOINT_FIELDS, key_id, signature_valid

_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Stands in for an entry whose stored JSON cannot be read, so every root covering it fails.
_UNREADABLE = bytes(32)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    size: int  # entries in the log
    checkpoints: int  # distinct checkpoint sizes seen in the database or the file
    problems: list[str] = field(default_factory=list)


def read_checkpoint_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The checkpoint records of the JSONL file, and a problem for each unreadable line."""
    if not path.exists():
        return [], []
    records, problems = [], []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(f"checkpoint file line {number}: not valid JSON")
            continue
        if not _well_formed(record):
            problems.append(f"checkpoint file line {number}: not a checkpoint record")
            continue
        records.append({k: record[k] for k in CHECKPOINT_FIELDS})
    return records, problems


def _well_formed(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and all(k in record for k in CHECKPOINT_FIELDS)
        and type(record["size"]) is int and record["size"] >= 0
        and isinstance(record["root"], str) and bool(_HEX64.fullmatch(record["root"]))
        and all(isinstance(record[k], str) for k in ("time", "key_id", "signature"))
    )


def _span(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}-{last}"


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _parse(row: dict[str, Any]) -> dict[str, Any] | str:
    """The entry of a row whose JSON columns are raw text, or why it cannot be read."""
    entry = dict(row)
    for name in ("objects", "details"):
        try:
            entry[name] = json.loads(row[name]) if row[name] is not None else None
        except ValueError:
            return f"{name} is not valid JSON"
    return entry


def _hash_with_seq(entry: dict[str, Any], seq: int) -> str:
    return merkle.leaf_hash(canonical_bytes({**entry, "seq": seq})).hex()


def check_entries(rows: list[dict[str, Any]]) -> tuple[dict[int, bytes], list[str]]:
    """Recompute each leaf from the row's content; report edits, reorderings and gaps."""
    problems: list[str] = []
    leaves: dict[int, bytes] = {}
    entries: dict[int, dict[str, Any]] = {}
    mismatched: list[int] = []
    for row in rows:
        seq = row["seq"]
        parsed = _parse(row)
        if isinstance(parsed, str):
            problems.append(f"entry {seq}: edited ({parsed})")
            leaves[seq] = _UNREADABLE
            continue
        entries[seq] = parsed
        leaf = merkle.leaf_hash(canonical_bytes(parsed))
        leaves[seq] = leaf
        if leaf.hex() != row["leaf_hash"]:
            mismatched.append(seq)

    for seq in mismatched:
        here = entries[seq]
        origin = next(
            (k for k in mismatched if k != seq
             and _hash_with_seq(here, k) in (here["leaf_hash"], entries[k]["leaf_hash"])),
            None,
        )
        if origin is not None:
            problems.append(f"entry {seq}: reordered (holds the content of entry {origin})")
        else:
            problems.append(
                f"entry {seq}: edited (content hashes to {leaves[seq].hex()[:16]}…, "
                f"recorded leaf hash {here['leaf_hash'][:16]}…)"
            )

    end = max(leaves) + 1 if leaves else 0
    for first, last in _runs(sorted(set(range(end)) - set(leaves))):
        problems.append(
            f"{_span(first, last)}: deleted (gap in seq: "
            + (f"{first - 1} is followed by {last + 1})" if first else f"the log starts at {last + 1})")
        )
    return leaves, sorted(problems, key=_problem_order)


def _problem_order(problem: str) -> int:
    return int(re.search(r"\d+", problem).group())  # type: ignore[union-attr]


def check_log(
    rows: list[dict[str, Any]],
    db_checkpoints: list[dict[str, Any]],
    file_checkpoints: list[dict[str, Any]],
    public_key: Ed25519PublicKey,
) -> VerifyReport:
    leaves, problems = check_entries(rows)
    end = max(leaves) + 1 if leaves else 0
    intact = next((s for s in range(end) if s not in leaves), end)  # first gap, if any
    ordered = [leaves[s] for s in range(intact)]

    db = {cp["size"]: cp for cp in db_checkpoints}
    in_file: dict[int, list[dict[str, Any]]] = {}
    for cp in file_checkpoints:
        if cp not in in_file.setdefault(cp["size"], []):
            in_file[cp["size"]].append(cp)
    sizes = sorted(set(db) | set(in_file))
    roots = merkle.roots_at(ordered, [s for s in sizes if s <= intact])
    expected_key = key_id(public_key)

    for size in sizes:
        stored, filed = db.get(size), in_file.get(size, [])
        variants: list[tuple[str, dict[str, Any]]]
        found: list[str] = []
        if stored is None:
            # A process killed between appending to the file and committing leaves a
            # checkpoint only in the file; if it verifies, it still proves the log.
            variants = [(" (file)", cp) for cp in filed]
        elif not filed:
            found.append(f"checkpoint {size}: in the database but missing from the checkpoint file")
            variants = [("", stored)]
        elif filed == [stored]:
            variants = [("", stored)]
        else:
            for cp in filed:
                if cp != stored:
                    fields = ", ".join(k for k in CHECKPOINT_FIELDS if cp[k] != stored[k])
                    found.append(f"checkpoint {size}: database and checkpoint file disagree ({fields})")
            variants = [(" (database)", stored)] + [(" (file)", cp) for cp in filed if cp != stored]

        for label, cp in variants:
            where = f"checkpoint {size}{label}"
            if cp["key_id"] != expected_key:
                found.append(f"{where}: signed by unknown key {cp['key_id']} (expected {expected_key})")
            elif not signature_valid(public_key, cp):
                found.append(f"{where}: bad signature")
            if size > end:
                found.append(
                    f"{where}: claims {size} entries but the log ends at {end} "
                    f"(truncated: {_span(end, size - 1)} missing)"
                )
            elif size in roots and roots[size].hex() != cp["root"]:
                found.append(
                    f"{where}: root mismatch (signed {cp['root'][:16]}…, "
                    f"entries 0-{size - 1} hash to {roots[size].hex()[:16]}…)"
                )
        if stored is None and found:
            found.insert(0, f"checkpoint {size}: in the checkpoint file but not in the database")
        problems += found
    return VerifyReport(ok=not problems, size=len(rows), checkpoints=len(sizes), problems=problems)
