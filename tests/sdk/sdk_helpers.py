"""Helpers for the SDK tests: a real broker socket (sandbox.broker_socket.serve) answering with canned DP-shaped answers.

The broker itself is not what these tests are about: the handler only checks the request
shape and answers in the broker's format.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from sandbox.errors import BudgetExceeded

ROOT = Path(__file__).resolve().parents[2]


def canned_answer(query: dict, mock: bool = False) -> dict:
    keys = list(query.get("group_by", []))
    aggs = query["aggregates"]
    columns = keys + (["bin"] if any(a["op"] == "histogram" for a in aggs) else [])
    for a in aggs:
        columns += [a["name"], a["name"] + "_ci_low", a["name"] + "_ci_high"]
    n_groups = 3 if keys else 1
    rows = []
    for g in range(n_groups):
        row: list = [f"{k}-{g}" for k in keys]
        if "bin" in columns:
            row.append(f"[{g * 10}, {g * 10 + 10})")
        for i, _ in enumerate(aggs):
            row += [100.0 + g + i, 90.0 + g + i, 110.0 + g + i]
        rows.append(row)
    return {"columns": columns, "rows": rows, "epsilon": query["epsilon"], "delta": 0.0,
            "suppressed_groups": 0, "cached": False, "mock": mock,
            "budget_left": {"epsilon": 2.5, "delta": 0.0}}


class CannedBroker:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.mock = False
        self.budget_epsilon = 2.5

    def __call__(self, method: str, params: dict):
        self.requests.append((method, params))
        if method == "query":
            if params.get("epsilon", 0) > self.budget_epsilon:
                raise BudgetExceeded("this query needs epsilon 9 but the grant has 2.5 left for farmers",
                                     "ask for less, or apply for more budget")
            return canned_answer(params, self.mock)
        if method == "preview":
            return {"dataset": params["dataset"], "epsilon": params["epsilon"], "delta": 0.0, "cached": False,
                    "budget_left": {"epsilon": 2.5, "delta": 0.0},
                    "accuracy": {a["name"]: {"ci_half_width": 1.0} for a in params["aggregates"]}}
        if method == "budget":  # the worker's shape: one row per dataset of the grant
            rows = [{"dataset": "farmers", "epsilon_total": 3.0, "epsilon_spent": 0.5, "epsilon_left": 2.5,
                     "delta_total": 0.0, "delta_spent": 0.0, "delta_left": 0.0}]
            return rows[0] if params.get("dataset") == "farmers" else rows
        if method == "datasets":
            return [{"name": "farmers", "title": "Farm subsidy roll"}]
        if method == "describe":
            return {"name": params["dataset"], "columns": [{"name": "county", "type": "str"}]}
        if method == "history":
            return [{"digest": "ab" * 32, "dataset": "farmers", "epsilon": 0.5, "status": "released"}]
        raise AssertionError(method)




def harness_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


PYTHON = sys.executable
