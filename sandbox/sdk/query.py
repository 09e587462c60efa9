"""Building queries the pandas way, and turning answers into DataFrames.

Nothing here touches data: a ``Dataset`` is only a name plus filters; ``agg`` sends one JSON
query document to the broker and gets back differentially private estimates.
"""
from __future__ import annotations

import builtins
import datetime as _dt
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from sandbox.sdk import client
from sandbox.sdk.errors import BrokerUnavailable, QueryInvalid

FILTER_OPS = ("==", "!=", "<", "<=", ">", ">=", "in")
AGGREGATE_OPS = ("count", "sum", "mean", "quantile", "histogram")
CI_SUFFIXES = ("_ci_low", "_ci_high")
MAX_NAME = 100
MOCK_BANNER = ("MOCK: answers come from mock data made from the public schema; "
               "they say nothing about the real data and spend no budget")
_NEGATE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}

_announced = False


def is_mock() -> bool:
    """True when the job runs in mock mode (``SANDBOX_MOCK=1``)."""
    return os.environ.get("SANDBOX_MOCK", "").strip().lower() in ("1", "true", "yes")


def announce_mock() -> None:
    """Print the MOCK banner on stderr, once per process."""
    global _announced
    if not _announced:
        _announced = True
        print(MOCK_BANNER, file=sys.stderr, flush=True)


# -- names and values -----------------------------------------------------------------------

def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise QueryInvalid(f"a {what} must be a non-empty string of at most {MAX_NAME} characters")
    return value


def _scalar(value: object, column: str) -> Any:
    """A filter value as plain JSON: str, int, float, bool or None (dates as ISO strings)."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            value = value.item()  # numpy scalar
        except (TypeError, ValueError):
            pass
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryInvalid(f"the filter on `{column}` compares with a non-finite number")
        return value
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if hasattr(value, "isoformat") and callable(value.isoformat):  # pandas Timestamp
        return value.isoformat()
    raise QueryInvalid(
        f"the filter on `{column}` compares with a {type(value).__name__}",
        "compare with a string, number, boolean or date",
    )


# -- filters ---------------------------------------------------------------------------------

class Condition:
    """One or more comparisons joined by AND (``&``). Build with ``sdk.col``."""

    __slots__ = ("_filters",)

    def __init__(self, filters: Iterable[dict]) -> None:
        self._filters = tuple(filters)

    def to_json(self) -> list[dict]:
        return [dict(f) for f in self._filters]

    def __and__(self, other: object) -> "Condition":
        if not isinstance(other, Condition):
            raise QueryInvalid("`&` joins two conditions such as (sdk.col('a') > 1) & (sdk.col('b') == 'x')")
        return Condition(self._filters + other._filters)

    __rand__ = __and__

    def __or__(self, other: object) -> "Condition":
        raise QueryInvalid("conditions can only be joined with `&` (AND)",
                           "for OR on one column use sdk.col(name).isin([...]); else ask two queries")

    __ror__ = __or__

    def __invert__(self) -> "Condition":
        if len(self._filters) != 1 or self._filters[0]["op"] == "in":
            raise QueryInvalid("`~` negates a single comparison, not `isin` or a joined condition")
        f = self._filters[0]
        return Condition([{**f, "op": _NEGATE[f["op"]]}])

    def __bool__(self) -> bool:
        raise QueryInvalid("a condition has no truth value: join conditions with `&`, not `and`",
                           "write (sdk.col('a') > 1) & (sdk.col('b') == 'x')")

    def __repr__(self) -> str:
        parts = [f"{f['column']} {f['op']} {f.get('value', f.get('values'))!r}" for f in self._filters]
        return "Condition(" + " & ".join(parts) + ")"


def _compare(column: str, op: str, value: object) -> dict:
    column = _name(column, "column name")
    if op not in FILTER_OPS:
        raise QueryInvalid(f"unknown filter operator {str(op)[:10]!r}", f"use one of {' '.join(FILTER_OPS)}")
    if op == "in":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise QueryInvalid(f"`in` on `{column}` needs a list of values")
        values = [_scalar(v, column) for v in value]  # type: ignore[union-attr]
        if not values:
            raise QueryInvalid(f"`in` on `{column}` needs at least one value")
        return {"column": column, "op": "in", "values": values}
    return {"column": column, "op": op, "value": _scalar(value, column)}


class Column:
    """A column of a dataset, for writing filters: ``sdk.col("age") >= 30``."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = _name(name, "column name")

    @property
    def name(self) -> str:
        return self._name

    def __eq__(self, other: object) -> Condition:  # type: ignore[override]
        return Condition([_compare(self._name, "==", other)])

    def __ne__(self, other: object) -> Condition:  # type: ignore[override]
        return Condition([_compare(self._name, "!=", other)])

    def __lt__(self, other: object) -> Condition:
        return Condition([_compare(self._name, "<", other)])

    def __le__(self, other: object) -> Condition:
        return Condition([_compare(self._name, "<=", other)])

    def __gt__(self, other: object) -> Condition:
        return Condition([_compare(self._name, ">", other)])

    def __ge__(self, other: object) -> Condition:
        return Condition([_compare(self._name, ">=", other)])

    __hash__ = None  # type: ignore[assignment]

    def isin(self, values: Iterable[object]) -> Condition:
        return Condition([_compare(self._name, "in", values)])

    def between(self, low: object, high: object) -> Condition:
        """``low <= column <= high`` (both ends included, as in pandas)."""
        return Condition([_compare(self._name, ">=", low), _compare(self._name, "<=", high)])

    def __repr__(self) -> str:
        return f"col({self._name!r})"


def col(name: str) -> Column:
    """A column to filter on: ``farmers.filter(sdk.col("age") >= 30)``."""
    return Column(name)


# -- aggregates ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Aggregate:
    """One statistic to estimate. Build with ``sdk.count()``, ``sdk.mean(col)``..."""

    op: str
    column: str | None = None
    q: float | None = None

    def to_json(self, name: str) -> dict:
        doc: dict[str, Any] = {"name": name, "op": self.op}
        if self.column is not None:
            doc["column"] = self.column
        if self.q is not None:
            doc["q"] = self.q
        return doc


def count() -> Aggregate:
    """Number of rows (per group)."""
    return Aggregate("count")


def sum(column: str) -> Aggregate:  # noqa: A001 - the pandas name
    """Sum of ``column`` (per group)."""
    return Aggregate("sum", _name(column, "column name"))


def mean(column: str) -> Aggregate:
    """Mean of ``column`` (per group)."""
    return Aggregate("mean", _name(column, "column name"))


def quantile(column: str, q: float) -> Aggregate:
    """The ``q``-quantile of ``column``, 0 < q < 1 (per group)."""
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
        raise QueryInvalid("a quantile's q must be a number strictly between 0 and 1")
    return Aggregate("quantile", _name(column, "column name"), float(q))


def median(column: str) -> Aggregate:
    """The median of ``column``: ``quantile(column, 0.5)``."""
    return quantile(column, 0.5)


def histogram(column: str) -> Aggregate:
    """Counts per bin of ``column`` (bins come from the dataset's policy); adds a ``bin`` column."""
    return Aggregate("histogram", _name(column, "column name"))


_PANDAS_OPS = {"count": "count", "size": "count", "sum": "sum", "mean": "mean",
               "median": "median", "histogram": "histogram"}


def _aggregate(name: str, spec: object) -> Aggregate:
    if isinstance(spec, Aggregate):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2 and builtins.all(isinstance(s, str) for s in spec):
        column, op = spec
        if op in ("count", "size"):
            return count()
        if op == "median":
            return median(column)
        if op in _PANDAS_OPS:
            return Aggregate(op, _name(column, "column name"))
        raise QueryInvalid(f"`{name}`: unknown aggregate {op[:20]!r}",
                           "use count, sum, mean, median, histogram, or sdk.quantile(col, q)")
    raise QueryInvalid(f"`{name}` must be an aggregate such as sdk.mean('income') or ('income', 'mean')")


def _aggregates(named: dict[str, object], keys: tuple[str, ...]) -> list[dict]:
    if not named:
        raise QueryInvalid("name at least one aggregate, e.g. agg(n=sdk.count(), epsilon=0.5)")
    out = []
    for name, spec in named.items():
        if not name.isidentifier() or len(name) > MAX_NAME:
            raise QueryInvalid(f"aggregate name {name[:40]!r} is not a plain identifier")
        if name.endswith(CI_SUFFIXES) or name == "bin" or name in keys:
            raise QueryInvalid(f"aggregate name `{name}` clashes with a result column",
                               "pick a name that is not a group key, `bin`, or ending in _ci_low/_ci_high")
        out.append(_aggregate(name, spec).to_json(name))
    return out


def _epsilon(epsilon: object) -> float:
    if epsilon is None:
        raise QueryInvalid("say how much privacy budget this query may spend",
                           "e.g. agg(n=sdk.count(), epsilon=0.5); sdk.preview shows the accuracy")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) \
            or epsilon <= 0:
        raise QueryInvalid("epsilon must be a positive number")
    return float(epsilon)


def digest(query: dict) -> str:
    """SHA-256 of the query document in canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(query, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- answers ---------------------------------------------------------------------------------

def _frame(answer: object, query: dict) -> Any:
    """A DataFrame of the broker's answer, with provenance in ``df.attrs``."""
    import pandas as pd

    if not isinstance(answer, dict) or not isinstance(answer.get("columns"), list) \
            or not isinstance(answer.get("rows"), list):
        raise BrokerUnavailable("the broker sent an answer without columns and rows", "tell the operator")
    columns = answer["columns"]
    rows = answer["rows"]
    if not builtins.all(isinstance(c, str) for c in columns) or not builtins.all(
            isinstance(r, list) and len(r) == len(columns) for r in rows):
        raise BrokerUnavailable("the broker sent rows that do not match its columns", "tell the operator")
    mock = bool(answer.get("mock")) or is_mock()
    if mock:
        announce_mock()
        from sandbox.sdk.frames import MockFrame
        df = MockFrame(rows, columns=columns)
    else:
        df = pd.DataFrame(rows, columns=columns)
    df.attrs.update({
        "dataset": query.get("dataset"),
        "epsilon": answer.get("epsilon"),
        "delta": answer.get("delta"),
        "epsilon_charged": answer.get("epsilon_charged", 0.0 if answer.get("cached") else answer.get("epsilon")),
        "cached": bool(answer.get("cached", False)),
        "mock": mock,
        "suppressed_groups": answer.get("suppressed_groups", 0),
        "budget_left": answer.get("budget_left"),
        "query": query,
        "digest": digest(query),
    })
    return df


# -- datasets --------------------------------------------------------------------------------

class Dataset:
    """A dataset the grant covers, plus filters. Nothing is asked until ``agg``."""

    __slots__ = ("_dataset", "_filters")

    def __init__(self, name: str, filters: tuple[dict, ...] = ()) -> None:
        self._dataset = _name(name, "dataset name")
        self._filters = tuple(filters)

    @property
    def name(self) -> str:
        return self._dataset

    def filter(self, condition: Condition | str, op: str | None = None, value: object = None) -> "Dataset":
        """Rows that match: ``filter(sdk.col("age") >= 30)`` or ``filter("age", ">=", 30)``."""
        if isinstance(condition, Condition):
            if op is not None:
                raise QueryInvalid("pass either a condition or (column, op, value), not both")
            added = condition.to_json()
        elif isinstance(condition, str):
            if op is None:
                raise QueryInvalid("filter(column, op, value) needs an operator such as '>='")
            added = [_compare(condition, op, value)]
        else:
            raise QueryInvalid("filter takes sdk.col(name) <op> value, or (column, op, value)")
        return Dataset(self._dataset, self._filters + tuple(added))

    def __getitem__(self, condition: Condition) -> "Dataset":
        """``farmers[sdk.col("age") >= 30]``, like boolean indexing in pandas."""
        if not isinstance(condition, Condition):
            raise QueryInvalid("a dataset can only be indexed by a condition such as farmers[sdk.col('age') >= 30]",
                               "columns are read through aggregates: farmers.agg(m=sdk.mean('age'), epsilon=...)")
        return self.filter(condition)

    def groupby(self, *by: str | list[str] | tuple[str, ...]) -> "Grouped":
        """Group by one or more columns: ``groupby("county")`` or ``groupby(["county", "crop"])``."""
        keys: list[str] = []
        for item in by:
            if isinstance(item, (list, tuple)):
                keys.extend(item)
            else:
                keys.append(item)  # type: ignore[arg-type]
        if not keys:
            raise QueryInvalid("groupby needs at least one column")
        keys = [_name(k, "group-by column") for k in keys]
        if len(set(keys)) != len(keys):
            raise QueryInvalid("a group-by column is named twice")
        return Grouped(self, tuple(keys))

    def _query(self, keys: tuple[str, ...], named: dict[str, object], epsilon: object) -> dict:
        return {
            "kind": "aggregate",
            "dataset": self._dataset,
            "filter": [dict(f) for f in self._filters],
            "group_by": list(keys),
            "aggregates": _aggregates(named, keys),
            "epsilon": _epsilon(epsilon),
        }

    def query(self, *, epsilon: float | None = None, **aggregates: Aggregate | tuple[str, str]) -> dict:
        """The JSON query document ``agg`` would send (nothing is sent)."""
        return self._query((), aggregates, epsilon)

    def agg(self, *, epsilon: float | None = None, **aggregates: Aggregate | tuple[str, str]) -> Any:
        """DP estimates over all (filtered) rows: a one-row DataFrame with CI columns."""
        query = self._query((), aggregates, epsilon)
        return _frame(client.call("query", query), query)

    aggregate = agg

    def preview(self, *, epsilon: float | None = None, **aggregates: Aggregate | tuple[str, str]) -> dict:
        """What ``agg`` with these arguments would cost and how accurate it would be; spends nothing."""
        return _preview(self._query((), aggregates, epsilon))

    def schema(self) -> dict:
        """The public schema of this dataset (column names, types, bounds)."""
        return describe(self._dataset)

    def __repr__(self) -> str:
        where = f", {len(self._filters)} filter(s)" if self._filters else ""
        return f"<sandbox dataset {self._dataset!r}{where}>"


class Grouped:
    """A dataset grouped by columns; ``agg`` estimates per group."""

    __slots__ = ("_source", "_keys")

    def __init__(self, source: Dataset, keys: tuple[str, ...]) -> None:
        self._source = source
        self._keys = keys

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def query(self, *, epsilon: float | None = None, **aggregates: Aggregate | tuple[str, str]) -> dict:
        """The JSON query document ``agg`` would send (nothing is sent)."""
        return self._source._query(self._keys, aggregates, epsilon)

    def agg(self, *, epsilon: float | None = None, **aggregates: Aggregate | tuple[str, str]) -> Any:
        """DP estimates per group: group keys as columns, then each estimate and its CI."""
        query = self._source._query(self._keys, aggregates, epsilon)
        return _frame(client.call("query", query), query)

    aggregate = agg

    def preview(self, *, epsilon: float | None = None, **aggregates: Aggregate | tuple[str, str]) -> dict:
        """What ``agg`` with these arguments would cost and how accurate it would be; spends nothing."""
        return _preview(self._source._query(self._keys, aggregates, epsilon))

    def __repr__(self) -> str:
        return f"<sandbox dataset {self._source.name!r} grouped by {', '.join(self._keys)}>"


def _preview(query: dict) -> dict:
    result = client.call("preview", query)
    if not isinstance(result, dict):
        raise BrokerUnavailable("the broker sent a malformed preview", "tell the operator")
    result = dict(result)
    result.setdefault("digest", digest(query))
    if result.get("mock") or is_mock():
        announce_mock()
        result["mock"] = True
    return result


# -- the grant -------------------------------------------------------------------------------

def dataset(name: str) -> Dataset:
    """A dataset the job's grant covers, by its catalog name."""
    return Dataset(name)


def preview(what: Dataset | Grouped, *, epsilon: float | None = None, **aggregates: Aggregate | tuple[str, str]) -> dict:
    """``sdk.preview(farmers.groupby("county"), n=sdk.count(), epsilon=0.5)``: cost, accuracy, no spend."""
    if not isinstance(what, (Dataset, Grouped)):
        raise QueryInvalid("preview takes a dataset or a grouped dataset first")
    return what.preview(epsilon=epsilon, **aggregates)


def budget(dataset: str | None = None) -> Any:
    """The grant's budget per dataset: a list of ``{"dataset", "epsilon_total", "epsilon_spent",
    "epsilon_left", "delta_total", "delta_spent", "delta_left"}`` ([] in a mock run), or the
    one for ``dataset`` if named (None in a mock run)."""
    params = {} if dataset is None else {"dataset": _name(dataset, "dataset name")}
    return client.call("budget", params)


def datasets() -> Any:
    """The datasets this job's grant covers."""
    return client.call("datasets", {})


def describe(name: str) -> dict:
    """The public schema of dataset ``name``."""
    return client.call("describe", {"dataset": _name(name, "dataset name")})


def history() -> Any:
    """The grant's previous queries, one row each (a DataFrame)."""
    import pandas as pd

    result = client.call("history", {})
    if isinstance(result, list) and builtins.all(isinstance(r, dict) for r in result):
        return pd.DataFrame(result)
    return result
