"""The catalog: registration is all-or-nothing; errors and public views never carry a value."""
from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from .conftest import CANARY, FARM, HEALTH, PROVIDER
from sqlalchemy import select

from sandbox.audit.models import AuditEntry
from sandbox.catalog import DatasetRow, mock_frame
from sandbox.errors import AlreadyExists, InvalidInput, NotFound, PolicyInvalid
from sandbox.policy import ColumnType, Tag, load_policy


def _state(env) -> tuple:
    """Everything registration could change: catalog rows, audit entries, vault files."""
    with env.db.transaction() as s:
        rows = [(r.name, r.version) for r in s.scalars(select(DatasetRow))]
        audit = [e.seq for e in s.scalars(select(AuditEntry))]
    return rows, audit, env.vault_files()


def test_add_list_get_describe(env, demo_csvs):
    added = env.catalog.add(demo_csvs["farmers"], "farmers", FARM, PROVIDER)
    assert len(added.version) == 64 and added.replaced is None
    env.catalog.add(demo_csvs["loan_defaults"], "loan_defaults", FARM, PROVIDER)
    assert env.catalog.names() == ["farmers", "loan_defaults"]
    assert [r.name for r in env.catalog.list()] == ["farmers", "loan_defaults"]
    row = env.catalog.get("farmers")
    assert row.version == added.version and row.openness == "conditional" and row.grade == "general-3"
    assert row.policy_sha256 == hashlib.sha256(FARM.read_bytes()).hexdigest()
    assert env.catalog.policy("farmers") == load_policy(FARM, "farmers")
    info = env.catalog.describe("farmers")
    assert info["version"] == added.version and info["provider"].startswith("Zhoukou")
    assert [c["name"] for c in info["columns"]][:3] == ["farmer_id", "name", "county"]
    assert info["columns"][7]["bounds"] == [0, 300000] and info["columns"][2]["categories"][0] == "Fugou"
    assert "rows" not in info and "row_count" not in info
    # the vault holds exactly the checked, typed data
    frame = env.catalog.load("farmers")
    source = pl.read_csv(demo_csvs["farmers"])
    assert frame.height == source.height and frame.schema["age"] == pl.Int64
    assert frame.get_column("income_yuan").sum() == pytest.approx(source.get_column("income_yuan").sum())


def test_audit_entries_written(env, demo_csvs):
    added = env.catalog.add(demo_csvs["farmers"], "farmers", FARM, PROVIDER)
    with env.db.transaction() as s:
        entries = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    by_action = {e.action: e for e in entries}
    assert set(by_action) == {"policy.loaded", "dataset.added"}
    added_entry = by_action["dataset.added"]
    assert added_entry.objects == {"dataset": "farmers", "version": added.version}
    assert added_entry.dataset_version == added.version
    assert added_entry.actor == PROVIDER.name and added_entry.role == PROVIDER.role
    loaded = by_action["policy.loaded"]
    assert loaded.details == {"policy_file": str(FARM), "sha256": hashlib.sha256(FARM.read_bytes()).hexdigest()}
    assert env.audit.verify().ok


def test_duplicate_name_and_replace(env, demo_csvs, tmp_path):
    first = env.catalog.add(demo_csvs["farmers"], "farmers", FARM, PROVIDER)
    before = _state(env)
    with pytest.raises(AlreadyExists) as e:
        env.catalog.add(demo_csvs["farmers"], "farmers", FARM, PROVIDER)
    assert "--replace" in e.value.hint
    assert _state(env) == before
    # a new version with --replace; the old version stays in the vault
    changed = pl.read_csv(demo_csvs["farmers"]).head(1000)
    path = tmp_path / "farmers-v2.parquet"
    changed.write_parquet(path)
    second = env.catalog.add(path, "farmers", FARM, PROVIDER, replace=True)
    assert second.version != first.version and second.replaced == first.version
    assert env.catalog.get("farmers").version == second.version
    assert env.catalog.load("farmers").height == 1000
    assert env.catalog.load("farmers", first.version).height == 3000
    assert env.audit_actions().count("dataset.added") == 2


def test_same_content_replace_keeps_file_on_failure(env, demo_csvs, monkeypatch):
    first = env.catalog.add(demo_csvs["farmers"], "farmers", FARM, PROVIDER)

    def boom(*a, **k):
        raise RuntimeError("audit down")

    monkeypatch.setattr(env.audit, "record", boom)
    with pytest.raises(RuntimeError):
        env.catalog.add(demo_csvs["farmers"], "farmers", FARM, PROVIDER, replace=True)
    # the version already existed: the failed replace must not remove it
    assert env.catalog.load("farmers", first.version).height == 3000


def test_failure_inside_transaction_leaves_nothing(env, demo_csvs, monkeypatch):
    before = _state(env)
    calls = []
    real = env.audit.record

    def second_fails(session, **kw):
        calls.append(kw["action"])
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(session, **kw)

    monkeypatch.setattr(env.audit, "record", second_fails)
    with pytest.raises(RuntimeError):
        env.catalog.add(demo_csvs["farmers"], "farmers", FARM, PROVIDER)
    assert calls == ["policy.loaded", "dataset.added"]
    assert _state(env) == before and env.vault_files() == []


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _farmers_csv(tmp_path, demo_csvs, edit) -> Path:
    frame = edit(pl.read_csv(demo_csvs["farmers"], infer_schema=False))
    path = tmp_path / "edited.csv"
    frame.write_csv(path)
    return path


MISMATCHES = [
    ("missing column", lambda f: f.drop("crop"), "missing declared column(s): crop"),
    ("undeclared column", lambda f: f.with_columns(pl.lit("x").alias("phone")), "does not declare: phone"),
    ("not an integer", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit(CANARY)).otherwise(pl.col("age")).alias("age")),
     "column 'age' (integer): 3 row(s) are not whole numbers"),
    ("fractional integer", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("41.5")).otherwise(pl.col("age")).alias("age")),
     "column 'age' (integer): 1 row(s)"),
    ("not a number", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("n/a " + CANARY)).otherwise(pl.col("income_yuan"))
        .alias("income_yuan")), "column 'income_yuan' (float): 2 row(s) are not finite numbers"),
    ("unknown category", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) < 4).then(pl.lit(CANARY)).otherwise(pl.col("county")).alias("county")),
     "column 'county' (category): 4 row(s) hold a value that is not one of the declared categories"),
    ("empty identifier", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise(pl.col("farmer_id")).alias("farmer_id")),
     "column 'farmer_id' (identifier): 5 row(s) are empty"),
    ("privacy unit over max_rows", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("ZK0000001")).otherwise(pl.col("farmer_id"))
        .alias("farmer_id")), "1 unit(s) have more than 1 row(s)"),
]


@pytest.mark.parametrize("case", MISMATCHES, ids=[c[0] for c in MISMATCHES])
def test_schema_mismatch_changes_nothing(env, demo_csvs, tmp_path, case):
    _, edit, words = case
    path = _farmers_csv(tmp_path, demo_csvs, edit)
    before = _state(env)
    with pytest.raises(InvalidInput) as e:
        env.catalog.add(path, "farmers", FARM, PROVIDER)
    assert words in e.value.message, e.value.message
    assert CANARY not in str(e.value) and e.value.hint
    assert _state(env) == before


def test_boolean_column(env, tmp_path):
    text = "farmer_id,county,loan_amount_yuan,loan_purpose,defaulted\n"
    text += "ZK1,Fugou,5000,machinery,yes\nZK2,Luyi,6000,other,FALSE\nZK3,Luyi,7000,other,0\n"
    env.catalog.add(_write(tmp_path, "loans.csv", text), "loan_defaults", FARM, PROVIDER)
    assert env.catalog.load("loan_defaults").get_column("defaulted").to_list() == [True, False, False]
    bad = text.replace("ZK3,Luyi,7000,other,0", "ZK3,Luyi,7000,other,maybe")
    with pytest.raises(InvalidInput, match="column 'defaulted' \\(boolean\\): 1 row"):
        env.catalog.add(_write(tmp_path, "bad.csv", bad), "loan_defaults", FARM, PROVIDER, replace=True)


def test_undeclared_column_dropped_on_request(env, demo_csvs, tmp_path):
    path = _farmers_csv(tmp_path, demo_csvs, lambda f: f.with_columns(pl.lit("x").alias("phone")))
    added = env.catalog.add(path, "farmers", FARM, PROVIDER, drop_undeclared=True)
    assert any("dropped 1 column" in w for w in added.warnings)
    assert "phone" not in env.catalog.load("farmers").columns


BROKEN_FILES = [
    ("ragged.csv", "farmer_id,county\nZK1,Fugou,extra\n", "malformed"),
    ("short.csv", "farmer_id,county,loan_amount_yuan,loan_purpose,defaulted\nZK1,Fugou\n", "malformed"),
    ("quote.csv", f'farmer_id,county\n"{CANARY},Fugou\n', "malformed"),
    ("empty.csv", "", "empty"),
    ("header.csv", "farmer_id,county,loan_amount_yuan,loan_purpose,defaulted\n", "no data rows"),
    ("noheader.csv", f"{CANARY},Fugou,5000,machinery,true\nZK2,Luyi,6000,other,false\n", "has none of the columns"),
    ("data.parquet", f"not parquet {CANARY}", "not readable as Parquet"),
    ("data.xlsx", "x", "unknown file type"),
]


@pytest.mark.parametrize("case", BROKEN_FILES, ids=[c[0] for c in BROKEN_FILES])
def test_unreadable_files_change_nothing(env, tmp_path, case):
    name, text, words = case
    before = _state(env)
    with pytest.raises(InvalidInput) as e:
        env.catalog.add(_write(tmp_path, name, text), "loan_defaults", FARM, PROVIDER)
    assert words in str(e.value) and CANARY not in str(e.value)
    assert _state(env) == before


def test_missing_file_policy_or_dataset(env, demo_csvs, tmp_path):
    before = _state(env)
    with pytest.raises(NotFound):
        env.catalog.add(tmp_path / "none.csv", "farmers", FARM, PROVIDER)
    with pytest.raises(NotFound):
        env.catalog.add(demo_csvs["farmers"], "farmers", tmp_path / "none.yaml", PROVIDER)
    with pytest.raises(NotFound, match="declares no dataset"):
        env.catalog.add(demo_csvs["farmers"], "farmers", HEALTH, PROVIDER)
    broken = _write(tmp_path, "p.yaml", FARM.read_text().replace("delta: 1e-7", "delta: 7"))
    with pytest.raises(PolicyInvalid):
        env.catalog.add(demo_csvs["farmers"], "farmers", broken, PROVIDER)
    with pytest.raises(NotFound):
        env.catalog.get("farmers")
    assert _state(env) == before


def test_mock_from_public_schema_only(env, demo_csvs, monkeypatch):
    env.catalog.add(demo_csvs["utility_payments"], "utility_payments", FARM, PROVIDER)

    def no_vault(*a, **k):
        raise AssertionError("mock data must never read the vault")

    monkeypatch.setattr(env.vault, "load", no_vault)
    policy = env.catalog.policy("utility_payments")
    frame = env.catalog.mock("utility_payments", rows=500, seed=3)
    assert frame.height == 500 and frame.columns == list(policy.column_names)
    assert frame.equals(env.catalog.mock(policy, rows=500, seed=3))
    assert not frame.equals(env.catalog.mock(policy, rows=500, seed=4))
    for col in policy.columns:
        s = frame.get_column(col.name)
        assert s.null_count() == 0
        if col.tag is Tag.IDENTIFIER:
            assert s.str.starts_with("mock-").all()
        elif col.categories:
            assert set(s.unique()) <= set(col.categories)
        elif col.numeric:
            assert s.min() >= col.bounds[0] and s.max() <= col.bounds[1]
            assert s.dtype == (pl.Int64 if col.type is ColumnType.INTEGER else pl.Float64)
        elif col.type is ColumnType.BOOLEAN:
            assert s.dtype == pl.Boolean
    # at most max_rows rows per privacy unit
    counts = frame.get_column("farmer_id").value_counts().get_column("count")
    assert counts.max() == policy.privacy_unit.max_rows


def test_mock_without_catalog():
    policy = load_policy(HEALTH, "inpatient_cohort")
    frame = mock_frame(policy, 100, seed=1)
    assert frame.get_column("patient_id")[0] == "mock-000001"
    assert frame.height == 100


def test_canary_never_in_public_views(env, demo_csvs):
    for name in ("farmers", "utility_payments", "loan_defaults"):
        env.catalog.add(demo_csvs[name], name, FARM, PROVIDER)
    env.catalog.add(demo_csvs["inpatient_cohort"], "inpatient_cohort", HEALTH, PROVIDER)
    assert CANARY in env.catalog.load("farmers").get_column("name").to_list()  # it is really there
    for name in env.catalog.names():
        assert CANARY not in repr(env.catalog.describe(name))
        frame = env.catalog.mock(name, rows=2000)
        assert not any(CANARY in str(v) for col in frame.iter_columns() for v in col.to_list())
    with env.db.transaction() as s:
        stored = repr([(e.objects, e.details) for e in s.scalars(select(AuditEntry))])
        stored += repr([r.policy for r in s.scalars(select(DatasetRow))])
    assert CANARY not in stored
    for path in env.vault_files():
        assert CANARY.encode() not in path.read_bytes()


def test_reads_inside_an_open_write_transaction(env, demo_csvs):
    """The broker looks datasets up while it holds a transaction; SQLite must not deadlock."""
    import time

    from sqlalchemy import text

    env.catalog.add(demo_csvs["loan_defaults"], "loan_defaults", FARM, PROVIDER)
    start = time.monotonic()
    with env.db.transaction() as session:
        session.execute(text("SELECT 1 FROM datasets"))  # BEGIN IMMEDIATE: the write lock is held
        assert env.catalog.get("loan_defaults").name == "loan_defaults"
        assert env.catalog.policy("loan_defaults").dataset == "loan_defaults"
        assert env.catalog.describe("loan_defaults", session)["name"] == "loan_defaults"
        assert env.catalog.names() == ["loan_defaults"]
    assert time.monotonic() - start < 10
