"""The DP query language: plain JSON documents, validated against the public schema.

A query is a JSON object (never code, never a pickle, never a polars plan). It is parsed and
checked here against the dataset's :class:`~sandbox.policy.Policy` and the grant's
:class:`Scope` *before any data is touched*, so whether a query is refused never depends on
the data. Messages name the field path (``aggregates[1].column``) and the rule; they are
built from schema names only and never echo a value sent by the caller or held in the data.

See ``docs/queries.md`` for the format, every rule and the answer.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sandbox.errors import PolicyRefused, QueryInvalid
from sandbox.policy import OPERATIONS, Column, ColumnType, Policy, Tag

# Limits: kept small so that every query compiles to a bounded amount of work and noise.
MAX_GROUP_BY = 3
MAX_AGGREGATES = 10
MAX_FILTERS = 20
MAX_IN_VALUES = 1000
MAX_CELLS = 10_000  # product of group cardinalities (times histogram bins)
MAX_NAME_LENGTH = 63

KINDS_LATER = ("model", "synthetic")  # reserved for DP models and synthetic data
TOP_FIELDS = ("kind", "dataset", "filter", "group_by", "aggregates", "epsilon")
AGG_FIELDS = ("name", "op", "column", "q")
FILTER_FIELDS = ("column", "op", "value", "values")

CATEGORY_OPS = ("==", "!=", "in", "not_in")
NUMERIC_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in")
BOOLEAN_OPS = ("==", "!=")
SET_OPS = ("in", "not_in")

RESERVED_NAMES = ("bin",)
SUFFIXES = ("_ci_low", "_ci_high")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Scope:
    """What a grant lets its holder touch; ``None`` means whatever the policy allows."""

    columns: frozenset[str] | None = None
    operations: frozenset[str] | None = None


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    values: tuple  # one value for comparison ops, the sorted distinct set for in/not_in

    def canonical(self) -> dict:
        if self.op in SET_OPS:
            return {"column": self.column, "op": self.op, "values": list(self.values)}
        return {"column": self.column, "op": self.op, "value": self.values[0]}


@dataclass(frozen=True)
class Aggregate:
    name: str
    op: str
    column: str | None = None
    q: float | None = None

    def canonical(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "op": self.op}
        if self.column is not None:
            out["column"] = self.column
        if self.q is not None:
            out["q"] = self.q
        return out


@dataclass(frozen=True)
class Query:
    """A validated aggregate query. Immutable; build it with :func:`parse_query`."""

    dataset: str
    filters: tuple[Filter, ...]
    group_by: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    epsilon: float
    kind: str = "aggregate"

    def canonical(self) -> dict:
        """The normalised document: defaults filled, filters and group keys sorted, names kept."""
        return {
            "kind": self.kind,
            "dataset": self.dataset,
            "filter": [f.canonical() for f in self.filters],
            "group_by": list(self.group_by),
            "aggregates": [a.canonical() for a in self.aggregates],
            "epsilon": self.epsilon,
        }

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: the same question always has the same digest."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def delta(self) -> float:
        return 0.0


def cost(query: Query) -> tuple[float, float]:
    """The (epsilon, delta) an answer to ``query`` spends. Needs no data."""
    return (query.epsilon, query.delta)


# ----------------------------------------------------------------------------- helpers


def _invalid(path: str, rule: str, hint: str = "") -> QueryInvalid:
    return QueryInvalid(f"{path}: {rule}", hint)


def _refused(path: str, rule: str, hint: str = "") -> PolicyRefused:
    return PolicyRefused(f"{path}: {rule}", hint)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_fields(obj: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict):
        raise _invalid(path, "must be a JSON object", "see docs/queries.md for the query format")
    for key in obj:
        if not isinstance(key, str) or key not in allowed:
            raise _invalid(path, "has an unknown field", f"allowed fields are: {', '.join(allowed)}")
    for key in required:
        if key not in obj:
            raise _invalid(f"{path}.{key}" if path != "query" else key, "is required",
                           f"add the field '{key}'")
    return obj


class _Checker:
    def __init__(self, policy: Policy, scope: Scope | None) -> None:
        self.policy = policy
        self.scope = scope or Scope()
        self.names = policy.column_names

    def column(self, value: Any, path: str) -> Column:
        """A column reference: exists, not an identifier, inside the grant's scope."""
        if not isinstance(value, str):
            raise _invalid(path, "must be a column name (a string)")
        if value not in self.names:
            raise _invalid(path, f"no such column in the schema of dataset '{self.policy.dataset}'",
                           "use one of: " + ", ".join(self._usable()))
        col = self.policy.column(value)
        if col.tag is Tag.IDENTIFIER:
            raise _refused(path, f"column '{col.name}' is an identifier; identifiers can never be "
                           "filtered on, grouped on or aggregated",
                           "use a non-identifier column; the privacy unit is handled by the broker")
        if self.scope.columns is not None and col.name not in self.scope.columns:
            raise _refused(path, f"column '{col.name}' is outside the scope of your grant",
                           "apply for a grant that includes this column")
        return col

    def operation(self, op: str, path: str) -> None:
        if op not in self.policy.allowed_operations:
            raise _refused(path, f"operation '{op}' is not allowed by the policy of dataset "
                           f"'{self.policy.dataset}'",
                           "allowed: " + ", ".join(sorted(self.policy.allowed_operations)))
        if self.scope.operations is not None and op not in self.scope.operations:
            raise _refused(path, f"operation '{op}' is outside the scope of your grant",
                           "allowed by your grant: " + ", ".join(sorted(self.scope.operations)))

    def _usable(self) -> list[str]:
        return [c.name for c in self.policy.columns if c.tag is not Tag.IDENTIFIER
                and (self.scope.columns is None or c.name in self.scope.columns)]


def cardinality(col: Column) -> int:
    """Number of public keys of a groupable column."""
    if col.type is ColumnType.BOOLEAN:
        return 2
    return len(col.categories or ())


# ----------------------------------------------------------------------------- parsing


def parse_query(doc: Any, policy: Policy, scope: Scope | None = None) -> Query:
    """Validate ``doc`` against the policy's public schema and the grant scope.

    Raises :class:`QueryInvalid` for malformed documents and :class:`PolicyRefused` for
    well-formed queries the policy or grant does not allow. Touches no data.
    """
    chk = _Checker(policy, scope)
    if not isinstance(doc, dict):
        raise _invalid("query", "must be a JSON object", "see docs/queries.md for the query format")
    for key in doc:
        if not isinstance(key, str) or key not in TOP_FIELDS:
            raise _invalid("query", "has an unknown field",
                           f"allowed fields are: {', '.join(TOP_FIELDS)}")

    kind = doc.get("kind", "aggregate")
    if not isinstance(kind, str):
        raise _invalid("kind", "must be a string", "use \"aggregate\"")
    if kind in KINDS_LATER:
        raise _invalid("kind", f"kind '{kind}' is not supported yet", "use \"aggregate\"")
    if kind != "aggregate":
        raise _invalid("kind", "unknown kind", "use \"aggregate\"")

    for key in ("dataset", "aggregates", "epsilon"):
        if key not in doc:
            raise _invalid(key, "is required", f"add the field '{key}'")

    dataset = doc["dataset"]
    if not isinstance(dataset, str):
        raise _invalid("dataset", "must be a string")
    if dataset != policy.dataset:
        raise _invalid("dataset", f"does not name the dataset of this policy ('{policy.dataset}')",
                       f"use \"{policy.dataset}\"")

    epsilon = _parse_epsilon(doc["epsilon"], policy)
    group_by = _parse_group_by(doc.get("group_by", []), chk)
    filters = _parse_filters(doc.get("filter", []), chk)
    aggregates = _parse_aggregates(doc["aggregates"], chk, group_by)

    cells = 1
    for name in group_by:
        cells *= cardinality(policy.column(name))
    for agg in aggregates:
        if agg.op == "histogram":
            cells *= len(policy.column(agg.column).bins) - 1  # type: ignore[arg-type]
    if cells > MAX_CELLS:
        raise _invalid("group_by", f"the answer would have more than {MAX_CELLS} cells "
                       "(product of the group cardinalities and histogram bins)",
                       "group by fewer or coarser columns")

    return Query(dataset=dataset, filters=filters, group_by=group_by, aggregates=aggregates,
                 epsilon=epsilon, kind=kind)


def _parse_epsilon(value: Any, policy: Policy) -> float:
    if not _is_number(value):
        raise _invalid("epsilon", "must be a finite number", "e.g. \"epsilon\": 0.5")
    value = float(value)
    if value <= 0:
        raise _invalid("epsilon", "must be greater than 0")
    if value > policy.max_epsilon_per_query:
        raise _refused("epsilon", f"exceeds the policy's maximum per query "
                       f"({policy.max_epsilon_per_query})",
                       f"use an epsilon of at most {policy.max_epsilon_per_query}")
    return value


def _parse_group_by(value: Any, chk: _Checker) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _invalid("group_by", "must be a list of column names", "e.g. \"group_by\": [\"county\"]")
    if len(value) > MAX_GROUP_BY:
        raise _invalid("group_by", f"at most {MAX_GROUP_BY} columns", "group by fewer columns")
    seen: set[str] = set()
    for i, item in enumerate(value):
        path = f"group_by[{i}]"
        col = chk.column(item, path)
        if not col.groupable:
            raise _refused(path, f"column '{col.name}' has no declared categories; only category "
                           "and boolean columns with a public list of values can be grouped on",
                           "group by a category or boolean column, or use a histogram")
        if col.name in seen:
            raise _invalid(path, f"column '{col.name}' appears twice")
        seen.add(col.name)
    return tuple(sorted(seen))


def _parse_filters(value: Any, chk: _Checker) -> tuple[Filter, ...]:
    if not isinstance(value, list):
        raise _invalid("filter", "must be a list of conditions",
                       "e.g. \"filter\": [{\"column\": \"age\", \"op\": \">=\", \"value\": 30}]")
    if len(value) > MAX_FILTERS:
        raise _invalid("filter", f"at most {MAX_FILTERS} conditions")
    out = []
    for i, item in enumerate(value):
        path = f"filter[{i}]"
        _check_fields(item, path, FILTER_FIELDS, ("column", "op"))
        col = chk.column(item["column"], f"{path}.column")
        op = item["op"]
        if col.type is ColumnType.CATEGORY:
            ops = CATEGORY_OPS
        elif col.type is ColumnType.BOOLEAN:
            ops = BOOLEAN_OPS
        elif col.numeric:
            ops = NUMERIC_OPS
        else:
            raise _refused(f"{path}.column", f"column '{col.name}' is free text and cannot be filtered on")
        if not isinstance(op, str) or op not in ops:
            raise _invalid(f"{path}.op", f"not an operator for a {col.type.value} column",
                           "use one of: " + ", ".join(ops))
        if op in SET_OPS:
            if "value" in item or "values" not in item:
                raise _invalid(f"{path}.values", f"operator '{op}' takes a list in 'values' (not 'value')")
            raw = item["values"]
            if not isinstance(raw, list) or not raw:
                raise _invalid(f"{path}.values", "must be a non-empty list")
            if len(raw) > MAX_IN_VALUES:
                raise _invalid(f"{path}.values", f"at most {MAX_IN_VALUES} values")
            vals = [_filter_value(col, v, f"{path}.values[{j}]") for j, v in enumerate(raw)]
            values = tuple(sorted(set(vals)))
        else:
            if "values" in item or "value" not in item:
                raise _invalid(f"{path}.value", f"operator '{op}' takes one value in 'value' (not 'values')")
            values = (_filter_value(col, item["value"], f"{path}.value"),)
        out.append(Filter(column=col.name, op=op, values=values))
    key = lambda f: (f.column, f.op, json.dumps(list(f.values)))  # noqa: E731
    return tuple(sorted(set(out), key=key))


def _filter_value(col: Column, value: Any, path: str) -> Any:
    if col.type is ColumnType.CATEGORY:
        if not isinstance(value, str):
            raise _invalid(path, f"must be a string from the declared categories of '{col.name}'")
        if col.categories is None or value not in col.categories:
            raise _invalid(path, f"is not one of the declared categories of '{col.name}'",
                           "the catalog lists the declared categories of each column")
        return value
    if col.type is ColumnType.BOOLEAN:
        if not isinstance(value, bool):
            raise _invalid(path, "must be true or false")
        return value
    if not _is_number(value):
        raise _invalid(path, f"must be a finite number (column '{col.name}' is {col.type.value})")
    if col.type is ColumnType.INTEGER and float(value).is_integer():
        return int(value)
    return float(value)


def _parse_aggregates(value: Any, chk: _Checker, group_by: tuple[str, ...]) -> tuple[Aggregate, ...]:
    if not isinstance(value, list) or not value:
        raise _invalid("aggregates", "must be a non-empty list",
                       "e.g. \"aggregates\": [{\"name\": \"n\", \"op\": \"count\"}]")
    if len(value) > MAX_AGGREGATES:
        raise _invalid("aggregates", f"at most {MAX_AGGREGATES} aggregates", "split the query")
    out: list[Aggregate] = []
    taken = set(group_by) | set(RESERVED_NAMES)
    histograms = 0
    for i, item in enumerate(value):
        path = f"aggregates[{i}]"
        _check_fields(item, path, AGG_FIELDS, ("name", "op"))
        name = item["name"]
        if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH:
            raise _invalid(f"{path}.name", "must be a name of letters, digits and '_' "
                           f"(not starting with a digit, at most {MAX_NAME_LENGTH} characters)")
        if name in taken or any(name == t + s for t in taken for s in SUFFIXES) or any(
                t == name + s for t in taken for s in SUFFIXES):
            raise _invalid(f"{path}.name", "clashes with another output column",
                           "output columns are the group keys, 'bin', and each name with "
                           "'_ci_low' and '_ci_high'; choose another name")
        taken.add(name)
        op = item["op"]
        if not isinstance(op, str) or op not in OPERATIONS:
            raise _invalid(f"{path}.op", "unknown operation", "use one of: " + ", ".join(sorted(OPERATIONS)))
        chk.operation(op, f"{path}.op")
        column = None
        q = None
        if op == "count":
            if "column" in item:
                raise _invalid(f"{path}.column", "count counts rows and takes no column",
                               "remove 'column' (use a filter to count rows with a property)")
        else:
            if "column" not in item:
                raise _invalid(f"{path}.column", f"is required for '{op}'")
            col = chk.column(item["column"], f"{path}.column")
            if not col.numeric or col.bounds is None:
                raise _refused(f"{path}.column", f"'{op}' needs a numeric column with declared bounds; "
                               f"'{col.name}' is not one", "choose a numeric column")
            if op == "histogram":
                if not col.bins or len(col.bins) < 2:
                    raise _refused(f"{path}.column", f"column '{col.name}' has no declared bins",
                                   "histograms are only available on columns with bins in the policy")
                histograms += 1
                if histograms > 1:
                    raise _invalid(f"{path}.op", "at most one histogram per query",
                                   "ask for the second histogram in another query")
            column = col.name
        if op == "quantile":
            if "q" not in item:
                raise _invalid(f"{path}.q", "is required for 'quantile'", "e.g. \"q\": 0.5 for the median")
            q = item["q"]
            if not _is_number(q) or not 0 < q < 1:
                raise _invalid(f"{path}.q", "must be a number strictly between 0 and 1")
            q = float(q)
        elif "q" in item:
            raise _invalid(f"{path}.q", "only 'quantile' takes 'q'")
        out.append(Aggregate(name=name, op=op, column=column, q=q))
    return tuple(out)
