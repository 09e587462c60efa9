"""Statistical checks: the noise has the stated scale and the stated 95% intervals cover.

Each test compiles once and then releases many times through the warm engine (real OpenDP
noise every time). Thresholds make a false failure very rare (p < 1e-4) while a scale off by
a factor of two fails with near certainty.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from sandbox.broker.engine import Engine
from sandbox.broker.query import parse_query

from .conftest import make_frame, make_policy

P_FAIL = 1e-4


def releases(engine, policy, df, doc, n):
    q = parse_query(doc, policy)
    return [engine.answer(policy, "v1", lambda: df, q).to_dict() for _ in range(n)]


def continuized_cdf(dist):
    """CDF of X + U, U ~ Uniform(0, 1): continuous, so the KS test is exact for integer noise."""
    def cdf(y):
        k = np.floor(y)
        return dist.cdf(k - 1) + dist.pmf(k) * (y - k)
    return cdf


def binomial_ok(hits: int, n: int, p: float) -> bool:
    return stats.binomtest(hits, n, p).pvalue > P_FAIL


@pytest.mark.parametrize("fast,n", [(True, 2000), (False, 300)])
def test_count_noise_matches_stated_scale(fast, n):
    policy = make_policy(min_release_count=-1e9, privacy_unit=make_policy().privacy_unit.__class__("farmer_id", 2))
    df = make_frame(3000)
    true = len(df)
    doc = {"dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}], "epsilon": 0.4}
    out = releases(Engine(fast=fast), policy, df, doc, n)
    stat = out[0]["mechanism"]["statistics"][0]
    scale = stat["scale"]
    assert scale == pytest.approx(2 / 0.4)  # sensitivity max_rows=2, epsilon 0.4
    errors = np.array([a["rows"][0][0] - true for a in out])
    jittered = errors + np.random.default_rng(7).random(len(errors))
    # discrete Laplace: P(k) ~ exp(-|k|/scale); scipy's dlaplace has a = 1/scale
    ks = lambda s: stats.kstest(jittered, continuized_cdf(stats.dlaplace(1 / s))).pvalue  # noqa: E731
    assert ks(scale) > P_FAIL
    if n >= 1000:  # enough releases to tell a scale off by two
        assert ks(2 * scale) < P_FAIL
        assert ks(scale / 2) < P_FAIL
    # the stated 95% interval covers the truth about 95% of the time
    half = stat["ci95_half_width"]
    exact = stats.dlaplace(1 / scale).cdf(np.floor(half)) - stats.dlaplace(1 / scale).cdf(-np.floor(half) - 1)
    assert 0.95 <= exact < 0.97
    hits = sum(a["rows"][0][1] <= true <= a["rows"][0][2] for a in out)
    assert binomial_ok(hits, n, exact)


def test_sum_and_mean_intervals_cover():
    policy = make_policy(min_release_count=-1e9)
    df = make_frame(400)
    doc = {"dataset": "farmers", "group_by": ["county"], "epsilon": 1.0,
           "aggregates": [{"name": "s", "op": "sum", "column": "subsidy_yuan"},
                          {"name": "m", "op": "mean", "column": "income_yuan"}]}
    out = releases(Engine(), policy, df, doc, 500)
    t = {r["county"]: r for r in df.group_by("county").agg(
        pl.col("subsidy_yuan").sum().alias("s"),
        pl.col("income_yuan").clip(0, 200000).mean().alias("m")).to_dicts()}
    cols = out[0]["columns"]
    s_hits = m_hits = total = 0
    errors = []
    for a in out:
        for row in a["rows"]:
            r = dict(zip(cols, row))
            tr = t[r["county"]]
            total += 1
            s_hits += r["s_ci_low"] <= tr["s"] <= r["s_ci_high"]
            m_hits += r["m_ci_low"] <= tr["m"] <= r["m_ci_high"]
            errors.append(r["s"] - tr["s"])
    scale = next(s["scale"] for s in out[0]["mechanism"]["statistics"] if s["column"] == "subsidy_yuan")
    assert scale == pytest.approx(10000 / (1.0 / 3))  # 3 statistics: count, two sums
    assert stats.kstest(np.array(errors) / scale, stats.laplace().cdf).pvalue > P_FAIL
    assert binomial_ok(s_hits, total, 0.95)
    assert m_hits / total >= 0.95 - 4 * np.sqrt(0.05 * 0.95 / total)  # conservative by design


def test_quantile_is_a_candidate_near_the_truth():
    policy = make_policy(min_release_count=-1e9)
    df = make_frame(5000)
    doc = {"dataset": "farmers", "epsilon": 1.0,
           "aggregates": [{"name": "med", "op": "quantile", "column": "age", "q": 0.5}]}
    out = releases(Engine(), policy, df, doc, 50)
    true = df["age"].median()
    values = np.array([a["rows"][0][0] for a in out])
    assert np.all(values == np.round(values))  # integer column: integer candidates
    assert np.mean(np.abs(values - true) <= 3) > 0.9
