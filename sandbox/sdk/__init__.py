"""The analysis SDK: ask the broker for differentially private answers, pandas-style.

    from sandbox import sdk
    farmers = sdk.dataset("farmers")
    by_county = farmers.groupby("county").agg(n=sdk.count(), income=sdk.mean("income_yuan"), epsilon=0.5)
    by_county.to_csv(sdk.output("by_county.csv"))

This package is what the analysis image ships: it imports nothing from the rest of ``sandbox``
(see docs/sdk.md). pandas is imported only when an answer is turned into a DataFrame.
"""
from __future__ import annotations

from sandbox.sdk.errors import (
    BrokerUnavailable,
    BudgetExceeded,
    GrantInactive,
    OutputRefused,
    PolicyRefused,
    QueryInvalid,
    SandboxError,
    ScriptRefused,
)
from sandbox.sdk.outputs import output
from sandbox.sdk.query import (
    Aggregate,
    Column,
    Condition,
    Dataset,
    Grouped,
    budget,
    col,
    count,
    dataset,
    datasets,
    describe,
    histogram,
    history,
    is_mock,
    mean,
    median,
    preview,
    quantile,
    sum,
)

__all__ = [
    # datasets and queries
    "dataset", "col", "count", "sum", "mean", "median", "quantile", "histogram",
    "preview", "budget", "datasets", "describe", "history", "output", "is_mock",
    "Dataset", "Grouped", "Column", "Condition", "Aggregate",
    # errors
    "SandboxError", "QueryInvalid", "PolicyRefused", "BudgetExceeded", "GrantInactive",
    "BrokerUnavailable", "OutputRefused", "ScriptRefused",
]

if is_mock():
    from sandbox.sdk.query import announce_mock as _announce_mock

    _announce_mock()
