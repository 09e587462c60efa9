"""Accuracy of released answers, on demand: does the noise have the stated scale, and do the
stated 95% intervals cover the truth 95% of the time? (The same checks, with pass/fail
thresholds, are tests in tests/broker/test_accuracy.py; this prints the figures.)

    python bench/accuracy.py [--releases 2000] [--farmers 20000]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from sandbox.broker.engine import Engine
from sandbox.broker.query import parse_query
from sandbox.catalog import conform, read_file
from sandbox.demo_data import write_demo_csvs
from sandbox.policy import load_policy

POLICY = Path(__file__).resolve().parents[1] / "policies" / "farm-credit.yaml"


def continuized_cdf(dist):  # type: ignore[no-untyped-def]
    """CDF of integer noise plus Uniform(0, 1) jitter, so the KS test applies exactly."""
    return lambda y: dist.cdf(np.floor(y) - 1) + dist.pmf(np.floor(y)) * (y - np.floor(y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=2000)
    parser.add_argument("--farmers", type=int, default=20_000)
    args = parser.parse_args()

    policy = load_policy(POLICY, "farmers")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_demo_csvs(Path(tmp), n_farmers=args.farmers)["farmers"]
        frame, _ = conform(read_file(path), policy, source=str(path), drop_undeclared=False)
    engine = Engine()

    def release(doc: dict) -> list[dict]:
        query = parse_query(doc, policy)
        return [engine.answer(policy, "v1", lambda: frame, query).to_dict() for _ in range(args.releases)]

    count_doc = {"dataset": "farmers", "aggregates": [{"name": "n", "op": "count"}], "epsilon": 0.2}
    out = release(count_doc)
    stat = out[0]["mechanism"]["statistics"][0]
    scale, truth = stat["scale"], frame.height
    errors = np.array([a["rows"][0][0] - truth for a in out], dtype=float)
    jittered = errors + np.random.default_rng(7).random(len(errors))
    ks = {f: stats.kstest(jittered, continuized_cdf(stats.dlaplace(1 / (f * scale)))).pvalue
          for f in (0.5, 1.0, 2.0)}
    covered = np.mean([a["rows"][0][1] <= truth <= a["rows"][0][2] for a in out])
    print(f"count, epsilon 0.2, {args.releases} releases: stated scale {scale:g}; "
          f"error std {errors.std():.2f} (Laplace predicts {np.sqrt(2) * scale:.2f})")
    print(f"  KS p-value against the stated scale {ks[1.0]:.3f}; against half {ks[0.5]:.1e}; "
          f"against double {ks[2.0]:.1e}")
    print(f"  95% interval covered the truth in {covered:.1%} of releases")

    mean_doc = {"dataset": "farmers", "group_by": ["county"], "epsilon": 0.5,
                "aggregates": [{"name": "m", "op": "mean", "column": "income_yuan"}]}
    truth_by = dict(frame.group_by("county").agg(pl.col("income_yuan").clip(0, 300000).mean()).iter_rows())
    out = release(mean_doc)
    cols = out[0]["columns"]
    rows = [dict(zip(cols, r)) for a in out for r in a["rows"]]
    covered = np.mean([r["m_ci_low"] <= truth_by[r["county"]] <= r["m_ci_high"] for r in rows])
    print(f"mean income by county, epsilon 0.5: 95% interval covered the truth in {covered:.1%} "
          f"of {len(rows)} group releases (the mean's interval is conservative by design)")


if __name__ == "__main__":
    main()
