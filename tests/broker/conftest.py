"""Shared fixtures: a farmers policy built in Python and a real polars frame."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sandbox.policy import Column, ColumnType, Grade, Openness, Policy, PrivacyUnit, Tag

COUNTIES = ("north", "south", "east", "west")
CROPS = ("rice", "wheat", "maize")
CANARY = "CANARY-Zq81x"  # a data value that must never appear in an error or an answer
CANARY_NUMBERS = (987654.321, 424242)

# A query using every part of the language (filters, group-by, each aggregate); tests copy it
# before changing it.
EXAMPLE_QUERY = {
    "kind": "aggregate", "dataset": "farmers",
    "filter": [{"column": "age", "op": ">=", "value": 30},
               {"column": "crop", "op": "in", "values": ["rice", "wheat"]}],
    "group_by": ["county"],
    "aggregates": [{"name": "n", "op": "count"},
                   {"name": "income", "op": "mean", "column": "income_yuan"},
                   {"name": "total", "op": "sum", "column": "subsidy_yuan"},
                   {"name": "median_income", "op": "quantile", "column": "income_yuan", "q": 0.5},
                   {"name": "income_hist", "op": "histogram", "column": "income_yuan"}],
    "epsilon": 0.5,
}


def make_policy(**over) -> Policy:
    cols = (
        Column("farmer_id", ColumnType.STRING, Tag.IDENTIFIER),
        Column("name", ColumnType.STRING, Tag.IDENTIFIER),
        Column("county", ColumnType.CATEGORY, Tag.QUASI_IDENTIFIER, categories=COUNTIES),
        Column("crop", ColumnType.CATEGORY, Tag.PUBLIC, categories=CROPS),
        Column("insured", ColumnType.BOOLEAN, Tag.PUBLIC),
        Column("age", ColumnType.INTEGER, Tag.QUASI_IDENTIFIER, bounds=(18, 100)),
        Column("income_yuan", ColumnType.FLOAT, Tag.SENSITIVE, bounds=(0.0, 200000.0),
               bins=(0.0, 5000.0, 20000.0, 50000.0, 100000.0, 200000.0)),
        Column("subsidy_yuan", ColumnType.INTEGER, Tag.SENSITIVE, bounds=(0, 10000)),
        Column("village", ColumnType.STRING, Tag.QUASI_IDENTIFIER),
    )
    kw = dict(
        dataset="farmers", title="Farmers", description="test", provider="bureau", topic="agri",
        openness=Openness.CONDITIONAL, grade=Grade.GENERAL_2, columns=cols,
        privacy_unit=PrivacyUnit("farmer_id", 1),
        allowed_operations=frozenset({"count", "sum", "mean", "quantile", "histogram"}),
        max_epsilon_per_query=100.0, default_epsilon_budget=200.0, delta=1e-7,
        min_release_count=10.0,
    )
    kw.update(over)
    return Policy(**kw)


def make_frame(n: int = 20_000, seed: int = 0, counties=COUNTIES) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    df = pl.DataFrame({
        "farmer_id": [f"id{i}" for i in range(n)],
        "name": [CANARY] * n,
        "county": rng.choice(list(counties), n),
        "crop": rng.choice(list(CROPS), n),
        "insured": rng.random(n) < 0.3,
        "age": rng.integers(18, 90, n),
        "income_yuan": rng.gamma(2.0, 15000.0, n),
        "subsidy_yuan": rng.integers(0, 5000, n),
        "village": [CANARY] * n,
    })
    return df


@pytest.fixture(scope="session")
def policy() -> Policy:
    return make_policy()


@pytest.fixture(scope="session")
def frame() -> pl.DataFrame:
    return make_frame()
