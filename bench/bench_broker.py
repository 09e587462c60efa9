"""Benchmark of the broker's DP engine against raw polars and pandas (run on demand).

    python bench/bench_broker.py [--rows 1000000 10000000] [--runs 5]

For each size it times, median of several runs: the raw polars group-by on the frame as
loaded, the same in pandas, the warm broker (dataset prepared and query compiled, i.e. what
every answer after the first costs), and the warm broker with ``Engine(fast=False)`` (every
statistic computed inside OpenDP's polars plan). Ratios are against raw polars measured in the
same run, because these machines are noisy.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import polars as pl

from sandbox.broker.engine import Engine
from sandbox.broker.query import parse_query
from sandbox.policy import Column, ColumnType, Grade, Openness, Policy, PrivacyUnit, Tag
from timing import measure

COUNTIES = tuple(f"county-{i:02d}" for i in range(20))


def policy() -> Policy:
    return Policy(
        dataset="farmers", title="bench", description="", provider="", topic="",
        openness=Openness.CONDITIONAL, grade=Grade.GENERAL_2,
        columns=(
            Column("farmer_id", ColumnType.INTEGER, Tag.IDENTIFIER),
            Column("county", ColumnType.CATEGORY, Tag.QUASI_IDENTIFIER, categories=COUNTIES),
            Column("income_yuan", ColumnType.FLOAT, Tag.SENSITIVE, bounds=(0.0, 200000.0)),
        ),
        privacy_unit=PrivacyUnit("farmer_id", 1),
        allowed_operations=frozenset({"count", "sum", "mean", "quantile", "histogram"}),
        max_epsilon_per_query=10.0, default_epsilon_budget=100.0, delta=0.0, min_release_count=0,
    )


def frame(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    return pl.DataFrame({
        "farmer_id": np.arange(n),
        "county": pl.Series(np.array(COUNTIES)[rng.integers(0, len(COUNTIES), n)]),
        "income_yuan": rng.gamma(2.0, 15000.0, n),
    })


QUERIES = {
    "group-by count": {"dataset": "farmers", "group_by": ["county"],
                       "aggregates": [{"name": "n", "op": "count"}], "epsilon": 1.0},
    "mean by group": {"dataset": "farmers", "group_by": ["county"],
                      "aggregates": [{"name": "m", "op": "mean", "column": "income_yuan"}],
                      "epsilon": 1.0},
}
RAW_POLARS = {
    "group-by count": lambda df: df.group_by("county").len(),
    "mean by group": lambda df: df.group_by("county").agg(pl.col("income_yuan").mean()),
}
RAW_PANDAS = {
    "group-by count": lambda pdf: pdf.groupby("county").size(),
    "mean by group": lambda pdf: pdf.groupby("county")["income_yuan"].mean(),
}


def median_time(fn: Callable[[], object], runs: int) -> float:
    return statistics.median(measure(fn, runs))


def bench_size(pol: Policy, n: int, runs: int) -> None:
    """One line per query for a frame of ``n`` rows; its frames and engines go when it returns."""
    df = frame(n)
    pdf = df.to_pandas()
    fast, slow = Engine(fast=True), Engine(fast=False)
    t = time.perf_counter()
    fast.prepared(pol, "v1", lambda: df)
    prep = time.perf_counter() - t
    slow.prepared(pol, "v1", lambda: df)
    for name, doc in QUERIES.items():
        q = parse_query(doc, pol)
        for eng in (fast, slow):
            eng.answer(pol, "v1", lambda: df, q)  # warm: compile once
        tp = median_time(lambda: RAW_POLARS[name](df), runs)
        tpd = median_time(lambda: RAW_PANDAS[name](pdf), runs)
        tb = median_time(lambda: fast.answer(pol, "v1", lambda: df, q), runs)
        ts = median_time(lambda: slow.answer(pol, "v1", lambda: df, q), runs)
        print(f"{n:>10}  {name:<15} {tp:9.4f} {tpd:9.4f} {tb:9.4f} {tb / tp:6.2f} "
              f"{ts:13.4f} {ts / tp:6.2f} {prep:9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    pol = policy()
    header = (f"{'rows':>10}  {'query':<15} {'polars s':>9} {'pandas s':>9} {'broker s':>9} "
              f"{'ratio':>6} {'opendp-plan s':>13} {'ratio':>6} {'prepare s':>9}")
    print(header)
    print("-" * len(header))
    for n in args.rows:
        bench_size(pol, n, args.runs)


if __name__ == "__main__":
    main()
