"""Demo data: deterministic, inside the declared schema, with the correlations it promises."""
from __future__ import annotations

import polars as pl
from .conftest import CANARY, FARM, HEALTH

from sandbox.catalog import conform
from sandbox.demo_data import demo_frames, farm_credit, write_demo_csvs
from sandbox.policy import load_policy_file


def test_deterministic():
    a = demo_frames(n_farmers=2000, n_patients=1000)
    b = demo_frames(n_farmers=2000, n_patients=1000)
    assert all(a[k].equals(b[k]) for k in a)
    c = demo_frames(n_farmers=2000, n_patients=1000, seed=7)
    assert not a["farmers"].equals(c["farmers"])


def test_within_the_declared_schema():
    policies = {**load_policy_file(FARM), **load_policy_file(HEALTH)}
    frames = demo_frames(n_farmers=5000, n_patients=3000)
    assert set(frames) == set(policies)
    for name, frame in frames.items():
        policy = policies[name]
        assert frame.columns == list(policy.column_names)
        checked, warnings = conform(frame, policy)  # raises on any schema violation
        assert warnings == [], (name, warnings)  # nothing outside bounds, nothing empty
        for col in policy.columns:
            s = frame.get_column(col.name)
            if col.categories:
                assert set(s.unique()) <= set(col.categories)
            if col.bounds:
                assert col.bounds[0] <= s.min() and s.max() <= col.bounds[1]


def test_realistic_relations():
    frames = farm_credit(n_farmers=20000)
    farmers, payments, loans = frames["farmers"], frames["utility_payments"], frames["loan_defaults"]
    assert payments.get_column("farmer_id").value_counts().get_column("count").max() <= 12
    assert loans.get_column("farmer_id").value_counts().get_column("count").max() <= 3
    by_crop = farmers.group_by("crop").agg(pl.col("income_yuan").mean()).sort("income_yuan")
    assert by_crop.get_column("crop")[-1] in ("fruit", "vegetables")
    late = payments.group_by("farmer_id").agg(pl.col("days_late").mean().alias("late"))
    joined = loans.join(late, on="farmer_id")
    rate_low = joined.filter(pl.col("late") < 1).get_column("defaulted").mean()
    rate_high = joined.filter(pl.col("late") > 8).get_column("defaulted").mean()
    assert rate_high > 2 * rate_low
    assert (payments.get_column("paid_on_time") == (payments.get_column("days_late") == 0)).all()


def test_canary_planted_once(tmp_path):
    paths = write_demo_csvs(tmp_path, n_farmers=1000, n_patients=500, canary=CANARY)
    assert set(paths) == {"farmers", "utility_payments", "loan_defaults", "inpatient_cohort"}
    names = pl.read_csv(paths["farmers"]).get_column("name")
    assert (names == CANARY).sum() == 1
    assert CANARY not in paths["utility_payments"].read_text(encoding="utf-8")
    assert CANARY not in demo_frames(n_farmers=1000, n_patients=500)["farmers"].get_column("name").to_list()
