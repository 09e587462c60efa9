"""Answers from the real OpenDP engine over real polars frames."""
from __future__ import annotations

import json

import polars as pl
import pytest

from sandbox.broker.engine import Engine, bin_labels, compile_query
from sandbox.broker.query import parse_query

from .conftest import CANARY, CANARY_NUMBERS, COUNTIES, EXAMPLE_QUERY, make_frame, make_policy

EXAMPLE = {**EXAMPLE_QUERY, "epsilon": 50}  # enough budget for tight answers


def truth(df: pl.DataFrame) -> pl.DataFrame:
    f = df.filter(pl.col("age") >= 30, pl.col("crop").is_in(["rice", "wheat"]))
    return f.group_by("county").agg(
        pl.len().alias("n"), pl.col("income_yuan").clip(0, 200000).mean().alias("income"),
        pl.col("subsidy_yuan").sum().alias("total"), pl.col("income_yuan").median().alias("med"))


@pytest.mark.parametrize("fast", [True, False])
def test_example_close_to_truth(policy, frame, fast):
    q = parse_query(EXAMPLE, policy)
    ans = Engine(fast=fast).answer(policy, "v1", lambda: frame, q).to_dict()
    cols = ans["columns"]
    assert cols[:2] == ["county", "bin"]
    assert cols[2:5] == ["n", "n_ci_low", "n_ci_high"]
    t = {r["county"]: r for r in truth(frame).to_dicts()}
    scalar = [dict(zip(cols, r)) for r in ans["rows"] if r[1] is None]
    assert [r["county"] for r in scalar] == list(COUNTIES)
    for r in scalar:
        tr = t[r["county"]]
        assert abs(r["n"] - tr["n"]) <= 5
        assert abs(r["income"] - tr["income"]) < 200
        assert abs(r["total"] - tr["total"]) < 5000
        assert abs(r["median_income"] - tr["med"]) < 2000
        for name in ("n", "income", "total", "median_income"):
            assert r[name + "_ci_low"] <= r[name] <= r[name + "_ci_high"]
    hist = [dict(zip(cols, r)) for r in ans["rows"] if r[1] is not None]
    labels = bin_labels(policy.column("income_yuan").bins)
    assert len(hist) == len(COUNTIES) * len(labels)
    for c in COUNTIES:
        assert [h["bin"] for h in hist if h["county"] == c] == labels
        assert abs(sum(h["income_hist"] for h in hist if h["county"] == c) - t[c]["n"]) < 30
    assert ans["epsilon"] == 50 and ans["delta"] == 0.0
    assert ans["suppressed_groups"] == 0
    assert sum(s["epsilon"] for s in ans["mechanism"]["statistics"]) == pytest.approx(50)
    json.dumps(ans)  # plain JSON


def test_suppression_and_keys_are_declared_categories(policy):
    # "west" is absent from the data and "south" is tiny: both fall below min_release_count.
    df = make_frame(5000, counties=("north", "east"))
    df = pl.concat([df, make_frame(3, seed=5, counties=("south",))])
    q = parse_query({"dataset": "farmers", "group_by": ["county"],
                     "aggregates": [{"name": "n", "op": "count"}], "epsilon": 50}, policy)
    ans = Engine().answer(policy, "v1", lambda: df, q).to_dict()
    assert [r[0] for r in ans["rows"]] == ["north", "east"]
    assert ans["suppressed_groups"] == 2


def test_undeclared_categories_never_become_groups(policy):
    df = make_frame(2000).with_columns(
        pl.when(pl.int_range(pl.len()) < 500).then(pl.lit(CANARY)).otherwise(pl.col("county")).alias("county"))
    q = parse_query({"dataset": "farmers", "group_by": ["county"],
                     "aggregates": [{"name": "n", "op": "count"}], "epsilon": 50}, policy)
    ans = Engine().answer(policy, "v1", lambda: df, q).to_dict()
    assert {r[0] for r in ans["rows"]} <= set(COUNTIES)
    assert CANARY not in json.dumps(ans)


def test_no_data_values_in_answers(policy):
    df = make_frame(3000).with_columns(
        pl.lit(CANARY).alias("farmer_id"), pl.lit(CANARY_NUMBERS[0]).alias("income_yuan"),
        pl.lit(CANARY_NUMBERS[1]).alias("subsidy_yuan"))
    q = parse_query(EXAMPLE, policy)
    for fast in (True, False):
        text = json.dumps(Engine(fast=fast).answer(policy, "v1", lambda: df, q).to_dict())
        assert CANARY not in text
        for num in CANARY_NUMBERS:
            assert str(num) not in text


def test_privacy_unit_truncated(policy):
    # one farmer with 1000 rows counts once (max_rows=1)
    df = make_frame(100).with_columns(pl.lit("same").alias("farmer_id"), pl.lit("north").alias("county"))
    q = parse_query({"dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}], "epsilon": 100},
                    make_policy(min_release_count=0))
    ans = Engine().answer(make_policy(min_release_count=0), "v1", lambda: df, q).to_dict()
    assert abs(ans["rows"][0][0] - 1) <= 1


def test_load_only_on_miss_and_lru(policy, frame):
    calls = []

    def load():
        calls.append(1)
        return frame

    eng = Engine(datasets=2)
    q = parse_query({"dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}], "epsilon": 1}, policy)
    for _ in range(3):
        eng.answer(policy, "v1", load, q)
    assert len(calls) == 1
    eng.answer(policy, "v2", load, q)
    eng.answer(policy, "v3", load, q)
    eng.answer(policy, "v1", load, q)  # evicted by v2, v3
    assert len(calls) == 4


def test_mock_flag_echoed(policy, frame):
    q = parse_query({"dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}], "epsilon": 1}, policy)
    assert Engine().answer(policy, "mock", lambda: frame, q, mock=True).to_dict()["mock"] is True


def test_no_group_by_boolean_group_and_filters(policy, frame):
    q = parse_query({"dataset": "farmers", "group_by": ["insured"],
                     "filter": [{"column": "crop", "op": "not_in", "values": ["maize"]},
                                {"column": "county", "op": "!=", "value": "west"},
                                {"column": "insured", "op": "==", "value": True}],
                     "aggregates": [{"name": "s", "op": "sum", "column": "income_yuan"}], "epsilon": 50},
                    policy)
    ans = Engine().answer(policy, "v1", lambda: frame, q).to_dict()
    assert ans["columns"] == ["insured", "s", "s_ci_low", "s_ci_high"]
    assert [r[0] for r in ans["rows"]] == [True]  # false group is empty after the filter
    true = frame.filter(pl.col("crop") != "maize", pl.col("county") != "west", pl.col("insured"))
    assert abs(ans["rows"][0][1] - true["income_yuan"].clip(0, 200000).sum()) < 50_000
    assert ans["suppressed_groups"] == 1


def test_our_sensitivities_match_opendp_polars(policy):
    """The fast path's scales equal what OpenDP's own polars analysis needs for the same plan."""
    doc = {"dataset": "farmers", "group_by": ["county"],
           "aggregates": [{"name": "n", "op": "count"}, {"name": "m", "op": "mean", "column": "income_yuan"},
                          {"name": "h", "op": "histogram", "column": "income_yuan"}], "epsilon": 3}
    for pol in (policy, make_policy(privacy_unit=type(policy.privacy_unit)("farmer_id", 4))):
        q = parse_query(doc, pol)
        plan = compile_query(pol, q, fast=False)  # builds OpenDP polars measurements and checks them
        for _, m, _, _ in plan.polars_measurements:
            assert m.map(pol.privacy_unit.max_rows) <= q.epsilon * (1 + 1e-9)
        total = sum(m.map(pol.privacy_unit.max_rows) for _, m, _, _ in plan.polars_measurements)
        assert total == pytest.approx(q.epsilon, rel=1e-6)
