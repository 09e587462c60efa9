"""The engine against the shipped policy file (skipped if the loader or file is missing)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sandbox.broker.engine import Engine
from sandbox.broker.query import parse_query
from sandbox.policy import ColumnType

POLICY_FILE = Path(__file__).resolve().parents[2] / "policies" / "farm-credit.yaml"


def _policy():
    try:
        from sandbox.policy import load_policy
    except ImportError:
        pytest.skip("no policy loader yet")
    if not POLICY_FILE.exists():
        pytest.skip("no policies/farm-credit.yaml")
    return load_policy(POLICY_FILE, "farmers")


def _frame_from_schema(policy, n=5000, seed=3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for col in policy.columns:
        if col.type is ColumnType.CATEGORY:
            data[col.name] = rng.choice(list(col.categories), n)
        elif col.type is ColumnType.BOOLEAN:
            data[col.name] = rng.random(n) < 0.5
        elif col.numeric and col.bounds:
            lo, hi = col.bounds
            v = rng.uniform(lo, hi, n)
            data[col.name] = np.round(v).astype(np.int64) if col.type is ColumnType.INTEGER else v
        else:
            data[col.name] = [f"X{i}" for i in range(n)]
    return pl.DataFrame(data)


def test_farm_credit_example():
    policy = _policy()
    cat = next(c for c in policy.columns if c.categories and c.name != "county")
    num = next(c for c in policy.columns if c.numeric and c.bounds and c.bins)
    doc = {"dataset": "farmers", "epsilon": policy.max_epsilon_per_query,
           "filter": [{"column": cat.name, "op": "in", "values": list(cat.categories[:2])}],
           "group_by": ["county"],
           "aggregates": [{"name": "n", "op": "count"},
                          {"name": "avg", "op": "mean", "column": num.name},
                          {"name": "med", "op": "quantile", "column": num.name, "q": 0.5},
                          {"name": "hist", "op": "histogram", "column": num.name}]}
    q = parse_query(doc, policy)
    df = _frame_from_schema(policy)
    ans = Engine().answer(policy, "v1", lambda: df, q).to_dict()
    json.dumps(ans)
    counties = [r[0] for r in ans["rows"] if r[1] is None]
    county = policy.column("county")
    assert set(counties) <= set(county.categories)
    assert len(counties) + ans["suppressed_groups"] == len(county.categories)
