"""Answers validated DP queries with OpenDP measurements.

How a query becomes an answer (details and the reasons in ``docs/queries.md``):

1. **Preparation, once per (dataset, version)** — the loaded frame is reduced to what queries
   may touch: identifier columns are dropped after each privacy unit is truncated to
   ``policy.privacy_unit.max_rows`` rows (this is what makes the ``contributions`` unit true),
   category values outside the declared list become null, numeric nulls/NaN are filled and
   values clamped to the declared bounds, histogram bins and fixed-point integer copies of the
   numeric columns are precomputed. The result is kept in an LRU of a few versions.
2. **Compilation, once per query shape** — the query is split into *statistics* (one group
   count, one sum per summed column, one histogram, one quantile per (column, q)); epsilon is
   split evenly between them; each gets an OpenDP measurement whose noise scale is computed
   from its epsilon and sensitivity, and whose privacy loss OpenDP itself then checks
   (``measurement.map(d_in) <= epsilon``). No data is needed; the result is cached.
3. **Release** — counts, sums and histograms: the exact aggregate vector over the public key
   set is computed with polars on the prepared frame and handed to an OpenDP
   ``make_laplace`` measurement over integer vectors with the L1 metric (discrete Laplace
   noise added by OpenDP). Quantiles (and everything when ``Engine(fast=False)``) go through
   OpenDP's polars plan (``make_private_lazyframe``), where OpenDP also does the aggregation.
4. **Post-processing** — means (noisy sum / noisy count), 95% intervals, suppression of
   groups whose noisy count is below ``policy.min_release_count``.

Only ``dp.enable_features("contrib")`` is ever enabled.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import polars as pl

from sandbox.broker.query import Aggregate, Filter, Query
from sandbox.errors import SandboxError
from sandbox.policy import Column, ColumnType, Policy, Tag

ALPHA = 0.05  # 95% intervals
MAX_LENGTH = 2**32 - 1  # public upper bound on the number of rows of any dataset (OpenDP margin)
FIXED_POINT_LIMIT = 2**30  # |value| / resolution stays below this, so i64 sums cannot overflow
QUANTILE_CANDIDATES = 1001
DATASET_CACHE = 3
PLAN_CACHE = 256

_FX = "__fx__"  # fixed-point integer copy of a numeric column
_BIN = "__bin__"  # histogram bin of a numeric column (Enum of labels)


class EngineError(SandboxError):
    """The engine could not answer (an internal failure; never carries data)."""

    code = "engine_error"


# ----------------------------------------------------------------------------- OpenDP, lazily

_dp_lock = threading.Lock()
_dp_mods: dict[str, Any] = {}


def _dp() -> dict[str, Any]:
    """Import only the parts of OpenDP the broker needs (``opendp.prelude`` costs seconds)."""
    if not _dp_mods:
        with _dp_lock:
            if not _dp_mods:
                from opendp.mod import enable_features

                enable_features("contrib")
                import opendp.accuracy as accuracy
                import opendp.domains as domains
                import opendp.measurements as measurements
                import opendp.measures as measures
                import opendp.metrics as metrics

                _dp_mods.update(accuracy=accuracy, domains=domains, measurements=measurements,
                                measures=measures, metrics=metrics)
    return _dp_mods


def _dpp():
    import opendp.extras.polars as dpp  # registers the .dp expression namespace

    _dp()
    return dpp


# ----------------------------------------------------------------------------- public schema


def bin_labels(bins: tuple[float, ...]) -> list[str]:
    """Labels of histogram bins: "[a, b)" and the last one closed, "[a, b]"."""
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else repr(float(x))

    n = len(bins) - 1
    return [f"[{fmt(bins[i])}, {fmt(bins[i + 1])}{']' if i == n - 1 else ')'}" for i in range(n)]


def resolution(col: Column) -> float:
    """Fixed-point step of a numeric column: 1 for integers that fit, else a power of ten."""
    lo, hi = col.bounds  # type: ignore[misc]
    m = max(abs(lo), abs(hi), 1e-300)
    if col.type is ColumnType.INTEGER and m <= FIXED_POINT_LIMIT:
        return 1.0
    return 10.0 ** math.ceil(math.log10(m / FIXED_POINT_LIMIT))


def _fx_bounds(col: Column) -> tuple[int, int]:
    res = resolution(col)
    lo, hi = col.bounds  # type: ignore[misc]
    return (round(lo / res), round(hi / res))


def _null_fill(col: Column) -> float:
    lo, hi = col.bounds  # type: ignore[misc]
    return min(max(0.0, lo), hi)


def _key_dtype(col: Column) -> pl.DataType:
    return pl.Boolean() if col.type is ColumnType.BOOLEAN else pl.Enum(list(col.categories or ()))


def _key_values(col: Column) -> list:
    return [False, True] if col.type is ColumnType.BOOLEAN else list(col.categories or ())


def _sensitivity_rows(policy: Policy) -> int:
    return int(policy.privacy_unit.max_rows)


# ----------------------------------------------------------------------------- preparation


@dataclass
class Prepared:
    """A dataset version reduced to what queries may touch (see module docstring)."""

    frame: pl.DataFrame
    schema: dict[str, pl.DataType]


def prepare(policy: Policy, raw: pl.DataFrame) -> Prepared:
    unit = policy.privacy_unit
    lf = raw.lazy()
    if unit.column in raw.columns and unit.max_rows > 0 and raw[unit.column].is_duplicated().any():
        # Enforce the declared bound on rows per privacy unit (keep the first ones).
        if unit.max_rows == 1:
            lf = lf.filter(pl.col(unit.column).is_first_distinct())
        else:
            lf = lf.filter(pl.int_range(pl.len()).over(unit.column) < unit.max_rows)
    exprs: list[pl.Expr] = []
    for col in policy.columns:
        if col.tag is Tag.IDENTIFIER or col.type is ColumnType.STRING:
            continue
        if col.name not in raw.columns:
            raise EngineError(f"the dataset has no column '{col.name}' declared in its policy",
                              "the data provider must fix the dataset or the policy")
        c = pl.col(col.name)
        if col.type is ColumnType.CATEGORY:
            cats = list(col.categories or ())
            s = c.cast(pl.String)
            exprs.append(pl.when(s.is_in(cats)).then(s).otherwise(None).cast(pl.Enum(cats)).alias(col.name))
        elif col.type is ColumnType.BOOLEAN:
            exprs.append(c.cast(pl.Boolean, strict=False).alias(col.name))
        else:
            if col.bounds is None:
                continue
            lo, hi = col.bounds
            dtype = pl.Int64 if col.type is ColumnType.INTEGER else pl.Float64
            x = c.cast(pl.Float64, strict=False)
            x = pl.when(x.is_nan()).then(None).otherwise(x).fill_null(_null_fill(col)).clip(lo, hi)
            if dtype == pl.Int64:
                x = x.round(0)
            exprs.append(x.cast(dtype).alias(col.name))
            res = resolution(col)
            exprs.append((x / res).round(0).cast(pl.Int64).alias(_FX + col.name))
            if col.bins and len(col.bins) >= 2:
                labels = bin_labels(col.bins)
                edges = list(col.bins)
                xb = x.clip(edges[0], edges[-1])
                idx = pl.lit(0, dtype=pl.UInt32)
                for e in edges[1:-1]:
                    idx = idx + (xb >= e).cast(pl.UInt32)
                exprs.append(pl.lit(pl.Series(labels, dtype=pl.String)).gather(idx)
                             .cast(pl.Enum(labels)).alias(_BIN + col.name))
    frame = lf.select(exprs).collect()
    return Prepared(frame=frame, schema=dict(frame.schema))


# ----------------------------------------------------------------------------- statistics


@dataclass
class Stat:
    """One noisy release: a vector over a public key set."""

    kind: str  # count | sum | histogram | quantile
    column: str | None
    by: tuple[str, ...]  # key columns of the prepared frame
    q: float | None = None
    epsilon: float = 0.0
    sensitivity: float = 0.0  # L1, in fixed-point units for sums
    scale: float = 0.0  # in fixed-point units for sums
    res: float = 1.0  # multiply a released value by this
    accuracy: float = 0.0  # 95% half-width, output units
    accuracy_half: float = 0.0  # 97.5% half-width, output units (for means)
    measurement: Any = None  # OpenDP noise measurement (fast path)
    candidates: list | None = None

    @property
    def key(self) -> str:
        if self.kind == "quantile":
            return f"quantile:{self.column}:{self.q!r}"
        return f"{self.kind}:{self.column or ''}"


@dataclass
class Plan:
    query: Query
    keys: pl.DataFrame  # public keys of the groups (one row if no group_by)
    stats: dict[str, Stat]
    hist_keys: pl.DataFrame | None
    polars_measurements: list[tuple[tuple[str, ...], Any, list[str], list[str]]] = field(default_factory=list)


def _keys_frame(policy: Policy, by: tuple[str, ...], bin_col: str | None) -> pl.DataFrame:
    frame = pl.DataFrame({"__one__": [0]})
    for name in by:
        col = policy.column(name)
        part = pl.DataFrame({name: pl.Series(name, _key_values(col), dtype=_key_dtype(col))})
        frame = frame.join(part, how="cross")
    if bin_col is not None:
        col = policy.column(bin_col)
        labels = bin_labels(col.bins)  # type: ignore[arg-type]
        part = pl.DataFrame({_BIN + bin_col: pl.Series(labels, dtype=pl.Enum(labels))})
        frame = frame.join(part, how="cross")
    # Without keys the frame keeps its single dummy row: one group, the whole (filtered) data.
    return frame.drop("__one__") if frame.width > 1 else frame


def _filter_expr(policy: Policy, f: Filter, opendp_plan: bool = False) -> pl.Expr:
    col = policy.column(f.column)
    c = pl.col(f.column)
    if col.type is ColumnType.CATEGORY:
        dt = pl.Enum(list(col.categories or ()))
        lits = pl.Series(list(f.values), dtype=dt)
        one = pl.lit(f.values[0])  # a declared category: polars compares it with the Enum
    else:
        lits = pl.Series(list(f.values))
        one = pl.lit(f.values[0])
    if opendp_plan and f.op in ("in", "not_in"):
        # OpenDP's polars plans do not support is_in: spell it as a chain of comparisons.
        vals = [pl.lit(v) for v in f.values]
        if f.op == "in":
            expr = c == vals[0]
            for v in vals[1:]:
                expr = expr | (c == v)
        else:
            expr = c != vals[0]
            for v in vals[1:]:
                expr = expr & (c != v)
        return expr
    if f.op == "in":
        return c.is_in(lits.implode())
    if f.op == "not_in":
        return ~c.is_in(lits.implode())
    return {"==": c == one, "!=": c != one, "<": c < one, "<=": c <= one,
            ">": c > one, ">=": c >= one}[f.op]


def compile_query(policy: Policy, query: Query, fast: bool = True) -> Plan:
    """Turn a validated query into noise measurements. Needs no data."""
    dp = _dp()
    aggs = query.aggregates
    hist = next((a for a in aggs if a.op == "histogram"), None)
    scalar = [a for a in aggs if a.op != "histogram"]
    stats: dict[str, Stat] = {}
    by = tuple(query.group_by)
    if scalar:
        stats["count:"] = Stat("count", None, by)
    for a in scalar:
        if a.op in ("sum", "mean"):
            s = Stat("sum", a.column, by, res=resolution(policy.column(a.column)))
            stats.setdefault(s.key, s)
        elif a.op == "quantile":
            s = Stat("quantile", a.column, by, q=a.q)
            stats.setdefault(s.key, s)
    if hist is not None:
        s = Stat("histogram", hist.column, by + (_BIN + hist.column,))
        stats[s.key] = s

    eps_each = query.epsilon / len(stats)
    d_in = _sensitivity_rows(policy)
    keys = _keys_frame(policy, by, None)
    hist_keys = _keys_frame(policy, by, hist.column) if hist is not None else None
    acc = dp["accuracy"]
    for s in stats.values():
        s.epsilon = eps_each
        if s.kind in ("count", "histogram"):
            s.sensitivity = float(d_in)
        elif s.kind == "sum":
            klo, khi = _fx_bounds(policy.column(s.column))  # type: ignore[arg-type]
            s.sensitivity = float(d_in) * max(abs(klo), abs(khi))
        if s.kind == "quantile":
            continue  # calibrated through the polars plan below
        s.scale = s.sensitivity / eps_each
        size = len(hist_keys if s.kind == "histogram" else keys)  # type: ignore[arg-type]
        # OpenDP checks the privacy loss of exactly the measurement that will add the noise.
        s.scale = _calibrate(lambda sc, size=size: _noise_measurement(dp, size, sc), s.scale,
                             s.sensitivity, eps_each)
        s.measurement = _noise_measurement(dp, size, s.scale)
        s.accuracy = float(acc.discrete_laplacian_scale_to_accuracy(s.scale, ALPHA)) * s.res
        s.accuracy_half = float(acc.discrete_laplacian_scale_to_accuracy(s.scale, ALPHA / 2)) * s.res

    plan = Plan(query=query, keys=keys, stats=stats, hist_keys=hist_keys)
    need_polars = [s for s in stats.values() if s.kind == "quantile" or not fast]
    if need_polars:
        _compile_polars(policy, query, plan, need_polars)
    return plan


def _noise_measurement(dp: dict, size: int, scale: float):
    D, M, MM = dp["domains"], dp["metrics"], dp["measurements"]
    return MM.make_laplace(D.vector_domain(D.atom_domain(T="i64"), size=size),
                           M.l1_distance(T="i64"), scale)


def _calibrate(make: Callable[[float], Any], scale: float, d_in: float, epsilon: float,
               integer: bool = True) -> float:
    """``scale`` nudged up until OpenDP's own privacy map of ``make(scale)`` meets ``epsilon``."""
    d = int(math.ceil(d_in)) if integer else d_in
    for i in range(60):
        if make(scale).map(d) <= epsilon:
            return scale
        scale *= (1.0 + 1e-9) if i < 10 else 1.01
    raise EngineError("could not calibrate the noise of a statistic", "report this to the operator")


# ----------------------------------------------------------------------------- polars path


def _lf_domain(dp: dict, dpp, prepared_schema: dict[str, pl.DataType], cols: list[str],
               margins: list) -> Any:
    D = dp["domains"]
    series = []
    for name in cols:
        dt = prepared_schema[name]
        if isinstance(dt, pl.Enum):
            atom = D.enum_domain(pl.Series(dt.categories))
        elif dt == pl.Boolean:
            atom = D.atom_domain(T="bool")
        elif dt == pl.Int64:
            atom = D.atom_domain(T="i64")
        else:
            atom = D.atom_domain(T="f64", nan=False)
        series.append(D.series_domain(name, D.option_domain(atom)))
    dom = D.lazyframe_domain(series)
    for mg in margins:
        dom = D.with_margin(dom, mg)
    return dom


def _schema_of(policy: Policy) -> dict[str, pl.DataType]:
    """The prepared frame's schema, derived from the policy alone."""
    out: dict[str, pl.DataType] = {}
    for col in policy.columns:
        if col.tag is Tag.IDENTIFIER or col.type is ColumnType.STRING:
            continue
        if col.type is ColumnType.CATEGORY:
            out[col.name] = pl.Enum(list(col.categories or ()))
        elif col.type is ColumnType.BOOLEAN:
            out[col.name] = pl.Boolean()
        elif col.bounds is not None:
            out[col.name] = pl.Int64() if col.type is ColumnType.INTEGER else pl.Float64()
            out[_FX + col.name] = pl.Int64()
            if col.bins and len(col.bins) >= 2:
                out[_BIN + col.name] = pl.Enum(bin_labels(col.bins))
    return out


def _polars_expr(dpp, policy: Policy, s: Stat, scale: float) -> pl.Expr:
    if s.kind in ("count", "histogram"):
        return dpp.dp_len(scale=scale, signed=True).alias(s.key)
    if s.kind == "sum":
        klo, khi = _fx_bounds(policy.column(s.column))  # type: ignore[arg-type]
        return pl.col(_FX + s.column).dp.sum((klo, khi), scale=scale).alias(s.key)  # type: ignore[operator]
    return pl.col(s.column).cast(pl.Float64).dp.quantile(s.q, s.candidates, scale=scale).alias(s.key)


def _quantile_candidates(col: Column) -> list[float]:
    lo, hi = col.bounds  # type: ignore[misc]
    cands = [lo + (hi - lo) * i / (QUANTILE_CANDIDATES - 1) for i in range(QUANTILE_CANDIDATES)]
    if col.type is ColumnType.INTEGER:
        cands = sorted({float(round(c)) for c in cands})
    return [float(c) for c in cands]


def _compile_polars(policy: Policy, query: Query, plan: Plan, stats: list[Stat]) -> None:
    dp, dpp = _dp(), _dpp()
    MM, M, MS = dp["measurements"], dp["metrics"], dp["measures"]
    schema = _schema_of(policy)
    d_in = _sensitivity_rows(policy)
    groups: dict[tuple[str, ...], list[Stat]] = {}
    for s in stats:
        if s.kind == "quantile":
            s.candidates = _quantile_candidates(policy.column(s.column))  # type: ignore[arg-type]
        groups.setdefault(s.by, []).append(s)

    for by, members in groups.items():
        cols = sorted({f.column for f in query.filters} | set(by)
                      | {(_FX + s.column) if s.kind == "sum" else s.column for s in members
                         if s.column is not None and s.kind != "histogram"})
        if not cols:  # a frame of no columns has no rows either: keep one column to count
            cols = [next(iter(schema))]
        max_groups = 1
        for name in by:
            max_groups *= len(schema[name].categories) + 1 if isinstance(schema[name], pl.Enum) else 3
        margins = [dpp.Margin(by=[], max_length=MAX_LENGTH)]
        if by:
            margins.append(dpp.Margin(by=[pl.col(b) for b in by], max_groups=max_groups))
        domain = _lf_domain(dp, dpp, schema, cols, margins)
        keys = (plan.hist_keys if any(s.kind == "histogram" for s in members) else plan.keys)

        def build(members_: list[Stat], scales: dict[str, float], cols=cols, by=by, keys=keys,
                  domain=domain):
            lf = pl.LazyFrame(schema={c: schema[c] for c in cols})
            for f in query.filters:
                lf = lf.filter(_filter_expr(policy, f, opendp_plan=True))
            exprs = [_polars_expr(dpp, policy, s, scales[s.key]) for s in members_]
            if by:
                lf = keys.lazy().join(lf.group_by(list(by)).agg(exprs), how="left", on=list(by),
                                      nulls_equal=True)
            else:
                lf = lf.select(exprs)
            return MM.make_private_lazyframe(domain, M.symmetric_distance(), MS.max_divergence(), lf)

        scales: dict[str, float] = {}
        for s in members:
            if s.kind == "quantile":
                # OpenDP's privacy loss is proportional to 1/scale: read it at scale 1, then check.
                eps1 = build([s], {s.key: 1.0}).map(d_in)
                s.sensitivity = eps1
                s.scale = _calibrate(lambda sc, s=s: build([s], {s.key: sc}), eps1 / s.epsilon,
                                     d_in, s.epsilon, integer=True)
            scales[s.key] = s.scale
        m = build(members, scales)
        total = sum(s.epsilon for s in members)
        if m.map(d_in) > total * (1 + 1e-9):
            raise EngineError("the compiled measurement exceeds its epsilon", "report this to the operator")
        plan.polars_measurements.append((by, m, cols, [s.key for s in members]))


# ----------------------------------------------------------------------------- release


def _exact(frame: pl.DataFrame, policy: Policy, plan: Plan, stats: list[Stat],
           keys: pl.DataFrame) -> dict[str, list[int]]:
    """Exact aggregates over the public key set, in key order (the input of the noise)."""
    df = frame
    if plan.query.filters:
        pred = _filter_expr(policy, plan.query.filters[0])
        for f in plan.query.filters[1:]:
            pred = pred & _filter_expr(policy, f)
        df = df.filter(pred)
    exprs = []
    for s in stats:
        if s.kind in ("count", "histogram"):
            exprs.append(pl.len().cast(pl.Int64).alias(s.key))
        else:
            exprs.append(pl.col(_FX + s.column).sum().alias(s.key))  # type: ignore[operator]
    by = list(stats[0].by)
    if by:
        agg = df.group_by(by).agg(exprs)
        out = keys.join(agg, on=by, how="left", nulls_equal=False, maintain_order="left")
        out = out.with_columns(pl.col(s.key).fill_null(0) for s in stats)
    else:
        out = df.select(exprs)
    return {s.key: out[s.key].to_list() for s in stats}


def _release_fast(prepared: Prepared, policy: Policy, plan: Plan, stats: list[Stat]) -> dict[str, list]:
    noisy: dict[str, list] = {}
    scalar = [s for s in stats if s.kind in ("count", "sum")]
    hist = [s for s in stats if s.kind == "histogram"]
    for group, keys in ((scalar, plan.keys), (hist, plan.hist_keys)):
        if not group:
            continue
        exact = _exact(prepared.frame, policy, plan, group, keys)  # type: ignore[arg-type]
        for s in group:
            noisy[s.key] = list(s.measurement(exact[s.key]))
            del exact[s.key]
    return noisy


def _release_polars(prepared: Prepared, plan: Plan) -> dict[str, list]:
    noisy: dict[str, list] = {}
    for by, m, cols, keys_of in plan.polars_measurements:
        lf = prepared.frame.lazy().select(cols)
        out = m(lf).collect()
        keys = plan.hist_keys if any(k.startswith("histogram:") for k in keys_of) else plan.keys
        if by:
            out = out.with_columns(pl.col(b).cast(keys.schema[b]) for b in by)  # type: ignore[union-attr]
            out = keys.join(out, on=list(by), how="left", maintain_order="left")  # type: ignore[union-attr]
        for k in keys_of:
            noisy[k] = out[k].to_list()
    return noisy


@dataclass
class Answer:
    columns: list[str]
    rows: list[list]
    epsilon: float
    delta: float
    suppressed_groups: int
    suppressed_bins: int
    mechanism: dict
    mock: bool = False

    def to_dict(self) -> dict:
        return {"columns": self.columns, "rows": self.rows, "epsilon": self.epsilon,
                "delta": self.delta, "suppressed_groups": self.suppressed_groups,
                "suppressed_bins": self.suppressed_bins, "mechanism": self.mechanism,
                "mock": self.mock}


def _count_ci(v: float, a: float) -> tuple[float, float]:
    return (max(0.0, v - a), max(0.0, v + a))


def _mean(policy: Policy, agg: Aggregate, n: float | None, sm: float | None, cs: Stat, ss: Stat):
    lo, hi = policy.column(agg.column).bounds  # type: ignore[arg-type, misc]
    if n is None or sm is None:
        return None, lo, hi
    value = min(max(sm / n, lo), hi) if n > 0 else None
    # Both intervals at 97.5%: jointly they hold with probability >= 95% (union bound).
    cl, ch = max(n - cs.accuracy_half, 0.0), n + cs.accuracy_half
    sl, sh = sm - ss.accuracy_half, sm + ss.accuracy_half
    if cl < 1:
        return value, lo, hi
    corners = [sl / cl, sl / ch, sh / cl, sh / ch]
    return value, max(lo, min(corners)), min(hi, max(corners))


def _assemble(policy: Policy, plan: Plan, noisy: dict[str, list], mock: bool) -> Answer:
    q = plan.query
    stats = plan.stats
    by = list(q.group_by)
    hist = next((a for a in q.aggregates if a.op == "histogram"), None)
    columns = list(by) + (["bin"] if hist is not None else [])
    for a in q.aggregates:
        columns += [a.name, a.name + "_ci_low", a.name + "_ci_high"]
    width = len(columns)
    rows: list[list] = []
    threshold = policy.min_release_count
    suppressed_groups = suppressed_bins = 0
    count = stats.get("count:")
    kept = set()
    if count is not None:
        key_rows = plan.keys.select(by).rows() if by else [()]
        for i, key in enumerate(key_rows):
            n = noisy["count:"][i]
            if n is None or n < threshold:
                suppressed_groups += 1
                continue
            kept.add(tuple(key))
            row = [_plain(k) for k in key] + ([None] if hist is not None else [])
            for a in q.aggregates:
                if a.op == "histogram":
                    row += [None, None, None]
                elif a.op == "count":
                    lo, hi = _count_ci(n, count.accuracy)
                    row += [int(n), lo, hi]
                elif a.op == "sum":
                    s = stats[f"sum:{a.column}"]
                    v = noisy[s.key][i] * s.res
                    row += [_num(v, s.res), _num(v - s.accuracy, s.res), _num(v + s.accuracy, s.res)]
                elif a.op == "mean":
                    s = stats[f"sum:{a.column}"]
                    sm = noisy[s.key][i] * s.res
                    row += list(_mean(policy, a, n, sm, count, s))
                elif a.op == "quantile":
                    s = stats[f"quantile:{a.column}:{a.q!r}"]
                    v = noisy[s.key][i]
                    row += [v] + list(_quantile_ci(s.candidates, v))
            rows.append(row)
    if hist is not None:
        s = stats[f"histogram:{hist.column}"]
        for i, key in enumerate(plan.hist_keys.rows()):  # type: ignore[union-attr]
            group, label = tuple(key[:-1]), key[-1]
            if count is not None and group not in kept:
                continue  # the whole group is suppressed
            n = noisy[s.key][i]
            if n is None or n < threshold:
                suppressed_bins += 1
                continue
            row = [_plain(k) for k in group] + [label] + [None] * (width - len(by) - 1)
            j = columns.index(hist.name)
            lo, hi = _count_ci(n, s.accuracy)
            row[j:j + 3] = [int(n), lo, hi]
            rows.append(row)
    mechanism = _mechanism(policy, plan)
    return Answer(columns=columns, rows=rows, epsilon=q.epsilon, delta=q.delta,
                  suppressed_groups=suppressed_groups, suppressed_bins=suppressed_bins,
                  mechanism=mechanism, mock=mock)


def _quantile_ci(candidates: list | None, v: Any) -> tuple:
    if v is None or not candidates:
        return (None, None)
    i = bisect.bisect_left(candidates, v)
    return (candidates[max(i - 1, 0)], candidates[min(i + 1, len(candidates) - 1)])


def _plain(v: Any) -> Any:
    return v


def _num(v: float, res: float):
    if res >= 1 and float(res).is_integer():
        return int(round(v))
    return round(v, max(0, -int(math.floor(math.log10(res)))))


def _mechanism(policy: Policy, plan: Plan) -> dict:
    out = []
    for s in plan.stats.values():
        item = {"statistic": s.kind, "column": s.column, "epsilon": s.epsilon}
        if s.kind == "quantile":
            item.update(q=s.q, distribution="exponential mechanism (OpenDP ExponentialMin)",
                        scale=s.scale, candidates=len(s.candidates or ()),
                        candidate_step=(s.candidates[1] - s.candidates[0]) if s.candidates and len(s.candidates) > 1 else None)
        else:
            item.update(distribution="discrete Laplace", scale=s.scale * s.res,
                        sensitivity=s.sensitivity * s.res, ci95_half_width=s.accuracy)
        out.append(item)
    return {
        "library": "opendp",
        "definition": "pure differential privacy (epsilon, delta=0)",
        "privacy_unit": {"column": policy.privacy_unit.column,
                         "max_rows": policy.privacy_unit.max_rows},
        "epsilon_split": "even across statistics",
        "statistics": out,
        "min_release_count": policy.min_release_count,
        "confidence": 1 - ALPHA,
    }


# ----------------------------------------------------------------------------- engine


class Engine:
    """Answers queries; keeps a few prepared dataset versions and compiled query plans.

    ``fast=True`` (default) releases counts, sums and histograms by handing the exact aggregate
    vector to an OpenDP ``make_laplace`` measurement; ``fast=False`` runs every statistic
    through OpenDP's polars plan. Both are pure-DP with the same scales.
    """

    def __init__(self, fast: bool = True, datasets: int = DATASET_CACHE, plans: int = PLAN_CACHE) -> None:
        self.fast = fast
        self._max_datasets = datasets
        self._max_plans = plans
        self._datasets: OrderedDict[tuple[str, str], Prepared] = OrderedDict()
        self._plans: OrderedDict[tuple, Plan] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, str], threading.Lock] = {}

    def prepared(self, policy: Policy, version: str, load: Callable[[], pl.DataFrame]) -> Prepared:
        key = (policy.dataset, version)
        with self._lock:
            hit = self._datasets.get(key)
            if hit is not None:
                self._datasets.move_to_end(key)
                return hit
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                hit = self._datasets.get(key)
            if hit is None:
                hit = prepare(policy, load())
                with self._lock:
                    self._datasets[key] = hit
                    while len(self._datasets) > self._max_datasets:
                        self._datasets.popitem(last=False)
            return hit

    def plan(self, policy: Policy, query: Query) -> Plan:
        key = (policy, query.digest(), self.fast)
        with self._lock:
            hit = self._plans.get(key)
            if hit is not None:
                self._plans.move_to_end(key)
                return hit
        plan = compile_query(policy, query, fast=self.fast)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self._max_plans:
                self._plans.popitem(last=False)
        return plan

    def accuracy(self, policy: Policy, query: Query) -> dict[str, dict[str, float]]:
        """Each statistic's epsilon and 95% interval half-width, known before any data is read."""
        return {
            key: {"epsilon": stat.epsilon, "ci95_half_width": stat.accuracy}
            for key, stat in self.plan(policy, query).stats.items()
        }

    def answer(self, policy: Policy, version: str, load: Callable[[], pl.DataFrame], query: Query,
               mock: bool = False) -> Answer:
        if query.dataset != policy.dataset:
            raise EngineError("the query is for another dataset", "parse the query with this policy")
        plan = self.plan(policy, query)
        prepared = self.prepared(policy, version, load)
        noisy: dict[str, list] = {}
        fast_stats = [s for s in plan.stats.values() if s.measurement is not None and self.fast]
        if fast_stats:
            noisy.update(_release_fast(prepared, policy, plan, fast_stats))
        if plan.polars_measurements:
            noisy.update(_release_polars(prepared, plan))
        return _assemble(policy, plan, noisy, mock)

