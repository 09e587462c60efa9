"""The SDK builds exactly the broker's query documents and turns answers into DataFrames."""
from __future__ import annotations

import ast
import os
import subprocess

import pandas as pd
import pytest

import sandbox.errors as host_errors
from sandbox import sdk
from sandbox.sdk import errors as sdk_errors
from sandbox.sdk.frames import MOCK_LABEL

from .sdk_helpers import PYTHON, ROOT, harness_env

# The example of the broker's query format, verbatim.
EXAMPLE = {
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
AGGS = dict(n=sdk.count(), income=sdk.mean("income_yuan"), total=sdk.sum("subsidy_yuan"),
            median_income=sdk.median("income_yuan"), income_hist=sdk.histogram("income_yuan"))


def test_expression_filters_build_the_example_query():
    farmers = sdk.dataset("farmers")
    cond = (sdk.col("age") >= 30) & sdk.col("crop").isin(["rice", "wheat"])
    assert farmers.filter(cond).groupby("county").query(epsilon=0.5, **AGGS) == EXAMPLE
    assert farmers[cond].groupby(["county"]).query(epsilon=0.5, **AGGS) == EXAMPLE


def test_triple_filters_build_the_example_query():
    farmers = sdk.dataset("farmers").filter("age", ">=", 30).filter("crop", "in", ("rice", "wheat"))
    assert farmers.groupby("county").query(epsilon=0.5, **AGGS) == EXAMPLE


def test_pandas_named_aggregation_tuples():
    q = sdk.dataset("farmers").agg  # noqa: F841 - just to show the method exists
    doc = sdk.dataset("farmers").groupby("county").query(
        n=("income_yuan", "count"), income=("income_yuan", "mean"), med=("income_yuan", "median"), epsilon=1)
    assert doc["aggregates"] == [
        {"name": "n", "op": "count"},
        {"name": "income", "op": "mean", "column": "income_yuan"},
        {"name": "med", "op": "quantile", "column": "income_yuan", "q": 0.5},
    ]
    assert doc["epsilon"] == 1.0 and isinstance(doc["epsilon"], float)


def test_every_filter_operator_and_negation():
    c = sdk.col("x")
    conds = [c == 1, c != "a", c < 2.5, c <= 3, c > 4, c >= 5, c.isin([1, 2])]
    assert [f.to_json()[0]["op"] for f in conds] == ["==", "!=", "<", "<=", ">", ">=", "in"]
    assert (~(c >= 5)).to_json() == [{"column": "x", "op": "<", "value": 5}]
    assert c.between(1, 9).to_json() == [{"column": "x", "op": ">=", "value": 1},
                                          {"column": "x", "op": "<=", "value": 9}]
    import datetime
    import numpy as np
    assert (c == np.int64(3)).to_json()[0]["value"] == 3 and type((c == np.int64(3)).to_json()[0]["value"]) is int
    assert (c >= datetime.date(2024, 1, 2)).to_json()[0]["value"] == "2024-01-02"


@pytest.mark.parametrize("build, match", [
    (lambda: (sdk.col("a") > 1) | (sdk.col("b") > 1), "AND"),
    (lambda: bool(sdk.col("a") > 1), "truth value"),
    (lambda: sdk.col("a") == object(), "compares with"),
    (lambda: sdk.col("a") == float("nan"), "non-finite"),
    (lambda: sdk.col("a").isin("abc"), "list"),
    (lambda: sdk.col("a").isin([]), "at least one"),
    (lambda: sdk.dataset("f").filter("a", "LIKE", 1), "operator"),
    (lambda: sdk.dataset("f").agg(n=sdk.count()), "privacy budget"),
    (lambda: sdk.dataset("f").agg(epsilon=0.5), "at least one aggregate"),
    (lambda: sdk.dataset("f").agg(n=sdk.count(), epsilon=-1), "positive"),
    (lambda: sdk.dataset("f").agg(n=sdk.count(), epsilon=True), "positive"),
    (lambda: sdk.dataset("f").groupby("c").agg(c=sdk.count(), epsilon=1), "clashes"),
    (lambda: sdk.dataset("f").agg(n_ci_low=sdk.count(), epsilon=1), "clashes"),
    (lambda: sdk.dataset("f").agg(n="count", epsilon=1), "must be an aggregate"),
    (lambda: sdk.dataset("f").agg(n=("a", "std"), epsilon=1), "unknown aggregate"),
    (lambda: sdk.quantile("a", 1.5), "between 0 and 1"),
    (lambda: sdk.dataset(""), "dataset name"),
    (lambda: sdk.dataset("f").groupby(), "at least one"),
    (lambda: sdk.dataset("f")["age"], "indexed by a condition"),
])
def test_bad_queries_are_refused_locally(build, match):
    with pytest.raises(sdk.QueryInvalid, match=match):
        build()


def test_grouped_agg_returns_estimates_with_ci_columns(broker):
    farmers = sdk.dataset("farmers")
    df = farmers.filter(sdk.col("age") >= 30).groupby("county").agg(
        n=sdk.count(), income=sdk.mean("income_yuan"), epsilon=0.5)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["county", "n", "n_ci_low", "n_ci_high", "income", "income_ci_low", "income_ci_high"]
    assert df.shape == (3, 7)
    assert df.attrs["epsilon"] == 0.5 and df.attrs["cached"] is False and df.attrs["mock"] is False
    assert df.attrs["budget_left"] == {"epsilon": 2.5, "delta": 0.0}
    assert len(df.attrs["digest"]) == 64
    method, params = broker.requests[-1]
    assert method == "query" and params == df.attrs["query"]
    assert params["filter"] == [{"column": "age", "op": ">=", "value": 30}]
    assert MOCK_LABEL not in repr(df)


def test_ungrouped_agg_and_histogram(broker):
    one = sdk.dataset("farmers").agg(total=sdk.sum("subsidy_yuan"), epsilon=0.25)
    assert one.shape == (1, 3) and list(one.columns) == ["total", "total_ci_low", "total_ci_high"]
    hist = sdk.dataset("farmers").agg(h=sdk.histogram("income_yuan"), epsilon=0.25)
    assert "bin" in hist.columns


def test_refusals_become_sdk_exceptions(broker):
    with pytest.raises(sdk.BudgetExceeded) as info:
        sdk.dataset("farmers").agg(n=sdk.count(), epsilon=9)
    assert isinstance(info.value, sdk.PolicyRefused)
    assert info.value.code == "budget_exceeded" and "apply for more budget" in str(info.value)


def test_preview_budget_datasets_describe_history(broker):
    grouped = sdk.dataset("farmers").groupby("county")
    p = grouped.preview(n=sdk.count(), epsilon=0.5)
    assert p["epsilon"] == 0.5 and "accuracy" in p and len(p["digest"]) == 64
    assert sdk.preview(grouped, n=sdk.count(), epsilon=0.5)["epsilon"] == 0.5
    assert broker.requests[-1][0] == "preview"
    assert [b["epsilon_left"] for b in sdk.budget()] == [2.5]
    assert sdk.budget("farmers")["epsilon_left"] == 2.5
    assert broker.requests[-1] == ("budget", {"dataset": "farmers"})
    assert sdk.datasets()[0]["name"] == "farmers"
    assert sdk.describe("farmers")["name"] == "farmers"
    assert sdk.dataset("farmers").schema()["name"] == "farmers"
    assert broker.requests[-1] == ("describe", {"dataset": "farmers"})
    hist = sdk.history()
    assert isinstance(hist, pd.DataFrame) and list(hist["dataset"]) == ["farmers"]
    assert not any(m == "query" for m, _ in broker.requests)  # none of these spent anything


def test_mock_answers_are_labelled(broker, monkeypatch, capsys):
    import sandbox.sdk.query as q

    monkeypatch.setattr(q, "_announced", False)
    broker.mock = True
    df = sdk.dataset("farmers").groupby("county").agg(n=sdk.count(), epsilon=0.5)
    assert df.attrs["mock"] is True
    assert repr(df).startswith(MOCK_LABEL)
    assert "MOCK" in capsys.readouterr().err


def test_mock_env_labels_even_if_the_broker_does_not(broker, monkeypatch):
    monkeypatch.setenv("SANDBOX_MOCK", "1")
    df = sdk.dataset("farmers").agg(n=sdk.count(), epsilon=0.5)
    assert df.attrs["mock"] is True and str(df).startswith(MOCK_LABEL)


def test_unreachable_broker(monkeypatch, short_tmp):
    monkeypatch.setenv("SANDBOX_SOCKET", str(short_tmp / "missing.sock"))
    with pytest.raises(sdk.BrokerUnavailable, match="could not be reached"):
        sdk.budget()


@pytest.mark.parametrize("name, match", [
    ("../x.csv", "separator"), ("a/b.csv", "separator"), ("a\\b.csv", "separator"),
    (".hidden.csv", "dot"), ("result.pkl", "must end in"), ("result", "must end in"),
    (".csv", "dot"), ("", "1 to"), ("x" * 200 + ".csv", "1 to"), ("a\nb.csv", "control"),
    ("a\x00.csv", "separator"), (3, "string"), ("/etc/passwd", "separator"),
])
def test_output_refusals(name, match, monkeypatch, tmp_path):
    monkeypatch.setenv("SANDBOX_OUTPUT", str(tmp_path))
    with pytest.raises(sdk.OutputRefused, match=match):
        sdk.output(name)


def test_output_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("SANDBOX_OUTPUT", str(tmp_path))
    for name in ("by_county.csv", "r.JSON", "notes.txt", "chart.png", "结果.csv"):
        assert sdk.output(name) == os.path.join(str(tmp_path), name)
    monkeypatch.delenv("SANDBOX_OUTPUT")
    assert sdk.output("a.csv") == "/job/out/a.csv"


def test_error_codes_match_the_host_errors():
    host_codes = {cls.code for cls in vars(host_errors).values()
                  if isinstance(cls, type) and issubclass(cls, host_errors.SandboxError)}
    sdk_only = {"broker_unavailable", "output_refused", "script_refused", "error"}
    for cls in (sdk.QueryInvalid, sdk.PolicyRefused, sdk.BudgetExceeded, sdk.GrantInactive):
        assert cls.code in host_codes
        assert getattr(host_errors, cls.__name__).code == cls.code
    for code in host_codes - {"error"}:  # every host code maps to a specific SDK class
        assert sdk_errors.error_from_wire({"code": code, "message": "m"}).__class__ is not sdk.SandboxError, code
    for cls in (sdk.BrokerUnavailable, sdk.OutputRefused, sdk.ScriptRefused):
        assert cls.code in sdk_only
    # the same hierarchy as on the host
    assert issubclass(sdk.BudgetExceeded, sdk.PolicyRefused) and issubclass(sdk.GrantInactive, sdk.PolicyRefused)
    err = sdk_errors.error_from_wire({"code": "grant_inactive", "message": "grant g-1 expired", "hint": "renew"})
    assert isinstance(err, sdk.GrantInactive) and str(err) == "grant g-1 expired (renew)"


def test_exit_codes_are_distinct_per_kind():
    kinds = [sdk.QueryInvalid, sdk.PolicyRefused, sdk.BudgetExceeded, sdk.GrantInactive,
             sdk.BrokerUnavailable, sdk.OutputRefused, sdk.ScriptRefused, sdk.SandboxError]
    codes = [sdk_errors.exit_code_for(k("m")) for k in kinds]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes
    assert sdk_errors.exit_code_for(ValueError()) == 1


def test_sdk_imports_nothing_from_the_rest_of_the_package():
    sdk_dir = ROOT / "sandbox" / "sdk"
    for path in sdk_dir.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [f"sandbox.{a.name}" for a in node.names] if node.module == "sandbox" \
                    else [node.module or ""]
            for name in names:
                if name == "sandbox" or name.startswith("sandbox."):
                    assert name == "sandbox.sdk" or name.startswith("sandbox.sdk."), f"{path.name} imports {name}"
    # and at run time, with every other sandbox module made unimportable
    code = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("sandbox.") and not name.startswith("sandbox.sdk"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import sandbox.sdk, sandbox.sdk.guard, sandbox.sdk.harness, sandbox.sdk._runtime, sandbox.sdk.frames
from sandbox.sdk import guard
assert guard.check_script("from sandbox import sdk\nx = sdk.count()\n") == []
print("clean", sorted(m for m in sys.modules if m.startswith("sandbox")))
"""
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=harness_env(), cwd="/")
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout


def test_sdk_import_does_not_import_pandas():
    out = subprocess.run([PYTHON, "-c", "import sys; import sandbox.sdk; import sandbox.broker_socket;"
                          "print('pandas' in sys.modules)"], capture_output=True, text=True, env=harness_env())
    assert out.stdout.strip() == "False", out.stderr
