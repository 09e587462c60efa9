"""The audit log on a real SQLite database: appending, checkpoints, proofs, tamper detection."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from sandbox.audit import AuditLog, merkle
from sandbox.audit.canonical import canonical_bytes
from sandbox.db import Database
from sandbox.errors import AlreadyExists, InvalidInput, NotFound


def fill(audit: AuditLog, n: int) -> None:
    for i in range(n):
        audit.append(actor=f"user{i % 3}", role="analyst", action="query",
                     objects={"dataset": f"ds{i % 2}", "query": i}, dataset_version="v1",
                     grant_id=f"g{i % 2}", purpose="credit scoring for farmers",
                     details={"epsilon": 0.1, "json": {"op": "count"}, "note": "数据可用不可见"})


def sql(db: Database, statement: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def problems(audit: AuditLog) -> list[str]:
    report = audit.verify()
    assert report.ok is (not report.problems)
    return report.problems


# -- keys ----------------------------------------------------------------------------------


def test_signing_key_files_have_safe_modes_and_are_never_overwritten(tmp_path: Path) -> None:
    private, public = tmp_path / "k" / "audit.key", tmp_path / "k" / "audit.pub"
    AuditLog.create_signing_key(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    before = private.read_bytes()
    with pytest.raises(AlreadyExists):
        AuditLog.create_signing_key(private, tmp_path / "k" / "other.pub")
    assert private.read_bytes() == before


def test_missing_signing_key_says_what_to_do(db: Database, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        AuditLog(db, tmp_path / "nope.key", tmp_path / "cp.jsonl")
    assert "sandbox init" in err.value.hint


# -- appending and checkpoints ----------------------------------------------------------------


def test_append_then_verify_ok(audit: AuditLog) -> None:
    fill(audit, 10)
    assert audit.checkpoint() is not None
    assert audit.checkpoint() is None  # nothing new to sign
    report = audit.verify()
    assert report.ok, report.problems
    assert (report.size, report.checkpoints) == (10, 3)  # every=4: sizes 4, 8, then 10


def test_checkpoint_every_n_entries_in_db_and_file(audit: AuditLog) -> None:
    fill(audit, 9)
    lines = [json.loads(x) for x in audit.checkpoint_file.read_text().splitlines()]
    assert [cp["size"] for cp in lines] == [4, 8]
    assert [e["checkpoint"] for e in audit.entries()] == [4] * 4 + [8] * 4 + [None]
    cp = audit.checkpoint()
    assert cp["size"] == 9 and cp["key_id"] == audit.key_id
    assert json.loads(audit.checkpoint_file.read_text().splitlines()[-1]) == cp


def test_entry_commits_with_the_callers_transaction_or_not_at_all(audit: AuditLog, db: Database) -> None:
    with pytest.raises(RuntimeError):
        with db.transaction() as session:
            for _ in range(4):  # reaching a checkpoint boundary, then rolling back
                audit.record(session, actor="a", role="analyst", action="query")
            raise RuntimeError("budget charge failed")
    assert audit.entries() == []
    assert not audit.checkpoint_file.exists()
    with db.transaction() as session:
        assert [audit.record(session, actor="a", role="analyst", action=f"q{i}") for i in range(4)] == [0, 1, 2, 3]
    assert [cp["size"] for cp in map(json.loads, audit.checkpoint_file.read_text().splitlines())] == [4]
    assert audit.verify().ok


def test_entries_must_be_plain_json(audit: AuditLog) -> None:
    with pytest.raises(InvalidInput):
        audit.append(actor="a", role="analyst", action="query", details={"epsilon": float("nan")})
    with pytest.raises(InvalidInput):
        audit.append(actor="a", role="analyst", action="query", details={"x": object()})
    assert audit.entries() == []


def test_concurrent_appends_are_gap_free_and_verify(db: Database, key: Path, tmp_path: Path) -> None:
    audit = AuditLog(db, key, tmp_path / "cp.jsonl", every=7)
    seqs: list[int] = []
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                seqs.append(audit.append(actor=f"t{t}", role="analyst", action="query", details={"i": i}))
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(seqs) == list(range(200))
    assert [e["seq"] for e in audit.entries()] == list(range(200))
    audit.checkpoint()
    report = audit.verify()
    assert report.ok, report.problems
    sizes = [json.loads(x)["size"] for x in audit.checkpoint_file.read_text().splitlines()]
    assert sizes == sorted(set(sizes)) and sizes[-1] == 200
    assert all(size % 7 == 0 for size in sizes[:-1])  # automatic ones land on the boundaries


_APPENDER = """
import sys
from pathlib import Path
from sandbox.audit import AuditLog
from sandbox.db import Database
log = AuditLog(Database(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), every=5)
for i in range(15):
    log.append(actor=sys.argv[4], role="analyst", action="query", details={"i": i})
"""


def test_concurrent_appends_from_processes_are_gap_free_and_verify(audit: AuditLog, key: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, audit.db.url, str(key),
                               str(audit.checkpoint_file), f"p{n}"]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    assert [e["seq"] for e in audit.entries()] == list(range(60))
    assert sorted(e["actor"] for e in audit.entries()) == sorted(f"p{n}" for n in range(4) for _ in range(15))
    report = audit.verify()
    assert report.ok and report.checkpoints >= 1, report.problems


# -- reading ---------------------------------------------------------------------------------


def test_entries_filters(audit: AuditLog) -> None:
    fill(audit, 12)
    audit.append(actor="op", role="operator", action="grant.revoke", grant_id="g1",
                 objects={"datasets": ["ds0", "ds9"]})
    assert [e["seq"] for e in audit.entries(last=3)] == [10, 11, 12]
    assert [e["seq"] for e in audit.entries(action="grant.revoke")] == [12]
    assert [e["seq"] for e in audit.entries(actor="user1")] == [1, 4, 7, 10]
    assert [e["seq"] for e in audit.entries(grant_id="g1", last=2)] == [11, 12]
    assert [e["seq"] for e in audit.entries(dataset="ds9")] == [12]
    assert [e["seq"] for e in audit.entries(dataset="ds0", last=2)] == [10, 12]
    all_ = audit.entries()
    t5 = all_[5]["time"]
    assert [e["seq"] for e in audit.entries(since=t5, until=all_[7]["time"])] == [5, 6]
    assert audit.entries(since="2999-01-01T00:00:00+00:00") == []
    with pytest.raises(InvalidInput):
        audit.entries(since="yesterday")


def test_inclusion_proof_of_an_entry(audit: AuditLog) -> None:
    fill(audit, 11)
    cp = audit.entry(10)["inclusion"]["checkpoint"]  # no checkpoint covered it: one is signed on demand
    assert cp["size"] == 11 and audit.checkpoint() is None
    for seq in (0, 5, 10):
        e = audit.entry(seq)
        assert e["inclusion"]["checkpoint"] == cp
        leaf = merkle.leaf_hash(canonical_bytes(e))
        assert leaf.hex() == e["leaf_hash"]
        proof = [bytes.fromhex(p) for p in e["inclusion"]["proof"]]
        assert merkle.verify_inclusion(seq, cp["size"], leaf, proof, bytes.fromhex(cp["root"]))
    with pytest.raises(NotFound):
        audit.entry(99)


def test_consistency_proofs_between_checkpoints(audit: AuditLog) -> None:
    fill(audit, 13)
    audit.checkpoint()
    cps = {json.loads(x)["size"]: json.loads(x) for x in audit.checkpoint_file.read_text().splitlines()}
    assert sorted(cps) == [4, 8, 12, 13]
    for old, new in [(4, 8), (4, 13), (8, 12), (12, 13)]:
        proof = [bytes.fromhex(p) for p in audit.consistency(old, new)]
        assert merkle.verify_consistency(old, new, bytes.fromhex(cps[old]["root"]),
                                         bytes.fromhex(cps[new]["root"]), proof)
    with pytest.raises(InvalidInput):
        audit.consistency(8, 99)


# -- tampering --------------------------------------------------------------------------------


def test_edited_field_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(db, "UPDATE audit_entries SET details = :d WHERE seq = 5", d='{"epsilon": 0.0001}')
    found = problems(audit)
    assert any(p.startswith("entry 5: edited") for p in found), found
    assert any(p.startswith("checkpoint 8: root mismatch") for p in found), found
    assert not any(p.startswith("checkpoint 4") for p in found), found


def test_edited_field_with_recomputed_leaf_hash_fails_the_signed_root(audit: AuditLog, db: Database) -> None:
    fill(audit, 8)
    entry = audit.entries()[2]
    forged = {**entry, "outcome": "refused"}
    sql(db, "UPDATE audit_entries SET outcome = 'refused', leaf_hash = :h WHERE seq = 2",
        h=merkle.leaf_hash(canonical_bytes(forged)).hex())
    assert problems(audit) == [
        f"checkpoint 4: root mismatch (signed {_signed_root(audit, 4)[:16]}…, "
        f"entries 0-3 hash to {_roots(audit)[4]}…)",
        f"checkpoint 8: root mismatch (signed {_signed_root(audit, 8)[:16]}…, "
        f"entries 0-7 hash to {_roots(audit)[8]}…)",
    ]


def _signed_root(audit: AuditLog, size: int) -> str:
    return next(json.loads(x)["root"] for x in audit.checkpoint_file.read_text().splitlines()
                if json.loads(x)["size"] == size)


def _roots(audit: AuditLog) -> dict[int, str]:
    leaves = [merkle.leaf_hash(canonical_bytes(e)) for e in audit.entries()]
    return {n: merkle.root(leaves[:n]).hex()[:16] for n in (4, 8)}


def test_unreadable_json_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit, 4)
    sql(db, "UPDATE audit_entries SET objects = '{broken' WHERE seq = 1")
    found = problems(audit)
    assert "entry 1: edited (objects is not valid JSON)" in found
    assert any(p.startswith("checkpoint 4: root mismatch") for p in found)


def test_deleted_entry_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(db, "DELETE FROM audit_entries WHERE seq IN (3, 6, 7)")
    found = problems(audit)
    assert "entry 3: deleted (gap in seq: 2 is followed by 4)" in found
    assert "entries 6-7: deleted (gap in seq: 5 is followed by 8)" in found
    with pytest.raises(Exception, match="gaps"):
        audit.append(actor="a", role="analyst", action="x")
        audit.checkpoint()


def test_swapped_rows_are_named_as_reordered(audit: AuditLog, db: Database) -> None:
    fill(audit, 8)
    # Swap everything but seq between rows 2 and 5 (the leaf hashes travel with the content).
    cols = "time, actor, role, action, outcome, objects, dataset_version, grant_id, purpose, details, leaf_hash"
    with db.engine.begin() as conn:
        a = conn.execute(text(f"SELECT {cols} FROM audit_entries WHERE seq = 2")).one()
        b = conn.execute(text(f"SELECT {cols} FROM audit_entries WHERE seq = 5")).one()
        sets = ", ".join(f"{c.strip()} = :{c.strip()}" for c in cols.split(","))
        conn.execute(text(f"UPDATE audit_entries SET {sets} WHERE seq = 2"), dict(b._mapping))
        conn.execute(text(f"UPDATE audit_entries SET {sets} WHERE seq = 5"), dict(a._mapping))
    found = problems(audit)
    assert "entry 2: reordered (holds the content of entry 5)" in found
    assert "entry 5: reordered (holds the content of entry 2)" in found


def test_swapped_contents_keeping_leaf_hashes_are_named_as_reordered(audit: AuditLog, db: Database) -> None:
    fill(audit, 8)
    with db.engine.begin() as conn:  # rows 1 and 6 trade contents; each seq keeps its leaf hash
        conn.execute(text("UPDATE audit_entries SET seq = -1 WHERE seq = 1"))
        conn.execute(text("UPDATE audit_entries SET seq = 1 WHERE seq = 6"))
        conn.execute(text("UPDATE audit_entries SET seq = 6 WHERE seq = -1"))
        h1, h6 = (conn.execute(text("SELECT leaf_hash FROM audit_entries WHERE seq = :s"), {"s": s}).scalar()
                  for s in (6, 1))  # now swap the leaf hashes back into place
        sql_ = "UPDATE audit_entries SET leaf_hash = :h WHERE seq = :s"
        conn.execute(text(sql_), {"h": h1, "s": 1})
        conn.execute(text(sql_), {"h": h6, "s": 6})
    found = problems(audit)
    assert "entry 1: reordered (holds the content of entry 6)" in found
    assert "entry 6: reordered (holds the content of entry 1)" in found


def test_truncation_after_a_checkpoint_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(db, "DELETE FROM audit_entries WHERE seq >= 7")
    assert problems(audit) == [
        "checkpoint 8: claims 8 entries but the log ends at 7 (truncated: entry 7 missing)",
        "checkpoint 10: claims 10 entries but the log ends at 7 (truncated: entries 7-9 missing)",
    ]


def test_truncation_hidden_from_the_database_is_caught_by_the_file(audit: AuditLog, db: Database) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(db, "DELETE FROM audit_entries WHERE seq >= 8")
    sql(db, "DELETE FROM audit_checkpoints WHERE size > 8")
    assert problems(audit) == [
        "checkpoint 10: in the checkpoint file but not in the database",
        "checkpoint 10 (file): claims 10 entries but the log ends at 8 (truncated: entries 8-9 missing)",
    ]


def test_forged_checkpoint_root_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit, 8)
    sql(db, "UPDATE audit_checkpoints SET root = :r WHERE size = 4", r="ab" * 32)
    found = problems(audit)
    assert "checkpoint 4: database and checkpoint file disagree (root)" in found
    assert "checkpoint 4 (database): bad signature" in found
    assert any(p.startswith("checkpoint 4 (database): root mismatch (signed abababababababab…") for p in found)
    assert not any("(file)" in p for p in found), found


def test_corrupted_signature_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit, 8)
    for path in (audit.checkpoint_file,):
        lines = path.read_text().splitlines()
        cp = json.loads(lines[1])
        cp["signature"] = ("00" if cp["signature"][:2] != "00" else "11") + cp["signature"][2:]
        lines[1] = json.dumps(cp)
        path.write_text("\n".join(lines) + "\n")
    sql(db, "UPDATE audit_checkpoints SET signature = (SELECT signature FROM audit_checkpoints "
            "WHERE size = 4) WHERE size = 8")
    found = problems(audit)
    assert "checkpoint 8: database and checkpoint file disagree (signature)" in found
    assert "checkpoint 8 (database): bad signature" in found
    assert "checkpoint 8 (file): bad signature" in found


def test_edited_checkpoint_file_is_named(audit: AuditLog) -> None:
    fill(audit, 12)
    lines = audit.checkpoint_file.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["size"] = 7
    lines[1] = json.dumps(edited)
    lines[2] = "{not json"
    audit.checkpoint_file.write_text("\n".join(lines) + "\n")
    found = problems(audit)
    assert "checkpoint file line 3: not valid JSON" in found
    assert "checkpoint 7: in the checkpoint file but not in the database" in found
    assert "checkpoint 7 (file): bad signature" in found
    assert "checkpoint 8: in the database but missing from the checkpoint file" in found
    assert "checkpoint 12: in the database but missing from the checkpoint file" in found


def test_checkpoint_signed_by_another_key_is_named(audit: AuditLog, db: Database, tmp_path: Path) -> None:
    fill(audit, 4)
    AuditLog.create_signing_key(tmp_path / "evil.key", tmp_path / "evil.pub")
    evil = AuditLog(db, tmp_path / "evil.key", audit.checkpoint_file, every=4)
    fill(evil, 1)
    evil.checkpoint()
    assert problems(audit) == [f"checkpoint 5: signed by unknown key {evil.key_id} (expected {audit.key_id})"]


def test_missing_checkpoint_file_is_named(audit: AuditLog) -> None:
    fill(audit, 4)
    audit.checkpoint_file.unlink()
    found = problems(audit)
    assert found[0] == f"checkpoint file {audit.checkpoint_file} is missing"
    assert "checkpoint 4: in the database but missing from the checkpoint file" in found


def test_checkpoint_in_the_file_only_after_a_crash_verifies_and_is_restored(audit: AuditLog, db: Database) -> None:
    """Killed between the file append and the commit: the file holds a checkpoint the database lost."""
    fill(audit, 5)
    audit.checkpoint()
    sql(db, "DELETE FROM audit_checkpoints WHERE size = 5")  # as if the commit never happened
    assert problems(audit) == []  # the file's checkpoint still verifies, so it still proves the log
    fill(audit, 2)
    audit.checkpoint()  # puts the lost row back instead of signing size 5 a second time
    assert problems(audit) == []
    sizes = [json.loads(line)["size"] for line in audit.checkpoint_file.read_text().splitlines()]
    assert sorted(set(sizes)) == sizes  # no size signed twice
    with db.transaction() as session:
        assert 5 in {r[0] for r in session.execute(text("SELECT size FROM audit_checkpoints"))}
