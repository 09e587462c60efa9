"""Synthetic demo data for the example policies (``policies/farm-credit.yaml``, ``health-research.yaml``).

Deterministic (numpy ``default_rng`` with a fixed seed) and realistic enough for DP answers to
say something: incomes depend on county, crop, land and age; a farmer's electricity bills are
paid late more often when income is low; loan defaults rise with days paid late. Every value
lies inside the bounds and categories the policies declare. No real person is in here.

``canary``: a marker string planted as one farmer's ``name`` (and one patient's ``patient_id``)
so that tests can assert it never leaks into any output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

SEED = 20250101

COUNTIES = ("Fugou", "Xihua", "Shangshui", "Shenqiu", "Dancheng", "Huaiyang", "Taikang", "Luyi")
_COUNTY_SHARE = np.array([0.10, 0.11, 0.14, 0.15, 0.15, 0.15, 0.10, 0.10])
_COUNTY_INCOME = np.array([1.05, 0.98, 0.92, 0.97, 0.88, 0.95, 1.00, 1.10])

CROPS = ("wheat", "maize", "soybean", "peanut", "cotton", "vegetables", "fruit", "sesame")
_CROP_SHARE = np.array([0.38, 0.22, 0.08, 0.10, 0.04, 0.09, 0.05, 0.04])
_CROP_INCOME = np.array([1.00, 0.95, 0.90, 1.10, 1.05, 1.55, 1.60, 1.00])
_GRAIN = np.array([True, True, True, False, False, False, False, False])

MONTHS = tuple(f"2025-{m:02d}" for m in range(1, 13))
_MONTH_LOAD = np.array([1.35, 1.30, 1.00, 0.85, 0.85, 1.05, 1.45, 1.50, 1.05, 0.85, 0.95, 1.25])

LOAN_PURPOSES = ("seeds_fertiliser", "machinery", "livestock", "land_lease", "irrigation",
                 "greenhouse", "small_business", "housing", "other")
_PURPOSE_SHARE = np.array([0.30, 0.14, 0.12, 0.10, 0.06, 0.06, 0.10, 0.07, 0.05])
_PURPOSE_RISK = np.array([0.0, -0.1, 0.35, 0.1, -0.2, 0.15, 0.3, 0.2, 0.25])

_SURNAMES = list("王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕")
_GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华建国志红玉兰春梅海燕德福金凤")

AGE_BANDS = ("18-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+")
_BAND_SHARE = np.array([0.07, 0.08, 0.11, 0.17, 0.22, 0.21, 0.14])
REGIONS = ("Dongcheng", "Xicheng", "Chaoyang", "Haidian", "Fengtai", "Shijingshan", "Tongzhou", "Changping", "other")
_REGION_SHARE = np.array([0.07, 0.08, 0.2, 0.18, 0.13, 0.04, 0.1, 0.12, 0.08])
DIAGNOSES = ("hypertension", "type2_diabetes", "ischaemic_heart_disease", "heart_failure", "stroke",
             "copd", "pneumonia", "chronic_kidney_disease", "other")
_DIAG_BASE = np.array([0.16, 0.13, 0.12, 0.06, 0.09, 0.07, 0.12, 0.05, 0.20])
_DIAG_AGE = np.array([0.02, 0.01, 0.03, 0.035, 0.03, 0.025, 0.0, 0.01, -0.04])  # per band above 18-29
_DIAG_LOS = np.array([5.0, 6.0, 7.5, 9.0, 13.0, 8.0, 8.0, 9.5, 5.5])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def farmers(n: int = 100_000, seed: int = SEED, canary: str | None = None) -> pl.DataFrame:
    """The agriculture bureau's subsidy roll, one row per farmer."""
    rng = np.random.default_rng([seed, 1])
    county = rng.choice(len(COUNTIES), n, p=_COUNTY_SHARE)
    crop = rng.choice(len(CROPS), n, p=_CROP_SHARE)
    age = np.clip(np.rint(rng.normal(54, 11, n)), 18, 90).astype(np.int64)
    household = np.clip(1 + rng.poisson(2.4, n), 1, 12).astype(np.int64)
    large = rng.random(n) < 0.03
    land = np.where(large, rng.lognormal(4.3, 0.5, n), rng.lognormal(2.1, 0.6, n))
    land = np.round(np.clip(land, 0.5, 200.0), 1)
    age_factor = np.where(age > 60, 1.0 - 0.02 * (age - 60), 1.0)
    income = (
        (9_000 + 1_900 * land ** 0.85 + 2_500 * household)
        * _COUNTY_INCOME[county] * _CROP_INCOME[crop] * age_factor
        * rng.lognormal(0.0, 0.45, n)
    )
    income = np.round(np.clip(income, 0.0, 300_000.0), 0)
    subsidy = 110.0 * land + np.where(_GRAIN[crop], 25.0 * land, 0.0)
    subsidy += np.where(rng.random(n) < 0.05, rng.uniform(2_000, 12_000, n), 0.0)
    subsidy = np.round(np.clip(subsidy, 0.0, 30_000.0), 2)
    surname = np.asarray(_SURNAMES)[rng.integers(0, len(_SURNAMES), n)]
    given1 = np.asarray(_GIVEN)[rng.integers(0, len(_GIVEN), n)]
    given2 = np.where(rng.random(n) < 0.7, np.asarray(_GIVEN)[rng.integers(0, len(_GIVEN), n)], "")
    names = pl.DataFrame({"a": surname, "b": given1, "c": given2}).select(
        pl.concat_str("a", "b", "c").alias("name")
    ).to_series()
    if canary is not None and n:
        names = names.scatter(int(rng.integers(0, n)), canary)
    return pl.DataFrame({
        "farmer_id": pl.Series([f"ZK{i:07d}" for i in range(1, n + 1)], dtype=pl.String),
        "name": names,
        "county": pl.Series(np.asarray(COUNTIES)[county], dtype=pl.String),
        "crop": pl.Series(np.asarray(CROPS)[crop], dtype=pl.String),
        "age": age,
        "household_size": household,
        "land_mu": land,
        "income_yuan": income,
        "subsidy_yuan": subsidy,
    })


def _reliability(frame: pl.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """A farmer's latent propensity to pay on time, higher with income and age."""
    income = frame.get_column("income_yuan").to_numpy()
    age = frame.get_column("age").to_numpy()
    z = 0.9 * np.log(np.maximum(income, 3_000) / 40_000) + 0.01 * (age - 50) + rng.normal(0, 0.8, len(income))
    return _sigmoid(1.3 + z)


def utility_payments(roll: pl.DataFrame, seed: int = SEED) -> tuple[pl.DataFrame, np.ndarray]:
    """Monthly electricity bills of the farmers with an account (88%), at most one per month.

    Also returns each farmer's mean days late (NaN without an account), for ``loan_defaults``.
    """
    rng = np.random.default_rng([seed, 2])
    n = roll.height
    reliability = _reliability(roll, rng)
    has_account = rng.random(n) < 0.88
    farmer = np.repeat(np.arange(n), 12)
    month = np.tile(np.arange(12), n)
    keep = has_account[farmer] & (rng.random(n * 12) < 0.95)
    farmer, month = farmer[keep], month[keep]
    rows = len(farmer)
    household = roll.get_column("household_size").to_numpy()[farmer]
    income = roll.get_column("income_yuan").to_numpy()[farmer]
    kwh = (45 + 22 * household + 0.0012 * income) * _MONTH_LOAD[month] * rng.lognormal(0, 0.35, rows)
    amount = np.round(np.clip(kwh * 0.56, 0.0, 2_000.0), 2)
    r = reliability[farmer]
    late = rng.random(rows) < _sigmoid(-2.6 + 4.0 * (1 - r))
    days = np.where(late, 1 + rng.geometric(1.0 / (3 + 25 * (1 - r)), rows), 0)
    unpaid = late & (rng.random(rows) < 0.04 * (1 - r))
    days = np.clip(np.where(unpaid, 90, days), 0, 90).astype(np.int64)
    counts = np.bincount(farmer, minlength=n)
    sums = np.bincount(farmer, weights=days, minlength=n)
    mean_late = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    frame = pl.DataFrame({
        "farmer_id": roll.get_column("farmer_id").gather(farmer),
        "county": roll.get_column("county").gather(farmer),
        "month": pl.Series(np.asarray(MONTHS)[month], dtype=pl.String),
        "amount_yuan": amount,
        "days_late": days,
        "paid_on_time": days == 0,
    })
    return frame, mean_late


def loan_defaults(roll: pl.DataFrame, mean_late: np.ndarray, seed: int = SEED) -> pl.DataFrame:
    """Microloans of the ~30% of farmers who borrowed (1-3 loans each) and whether they defaulted."""
    rng = np.random.default_rng([seed, 3])
    n = roll.height
    borrower = np.flatnonzero(rng.random(n) < 0.30)
    loans = rng.choice([1, 2, 3], len(borrower), p=[0.70, 0.22, 0.08])
    farmer = np.repeat(borrower, loans)
    rows = len(farmer)
    income = roll.get_column("income_yuan").to_numpy()[farmer]
    land = roll.get_column("land_mu").to_numpy()[farmer]
    purpose = rng.choice(len(LOAN_PURPOSES), rows, p=_PURPOSE_SHARE)
    amount = (8_000 + 0.45 * income + 600 * land) * rng.lognormal(0, 0.5, rows)
    amount = np.round(np.clip(amount, 1_000, 300_000) / 100) * 100
    late = mean_late[farmer]
    late = np.where(np.isnan(late), 4.0, late)  # no electricity account: average risk
    logit = -3.8 + 0.22 * late - 0.55 * np.log(np.maximum(income, 3_000) / 40_000) + _PURPOSE_RISK[purpose]
    defaulted = rng.random(rows) < _sigmoid(logit)
    return pl.DataFrame({
        "farmer_id": roll.get_column("farmer_id").gather(farmer),
        "county": roll.get_column("county").gather(farmer),
        "loan_amount_yuan": amount,
        "loan_purpose": pl.Series(np.asarray(LOAN_PURPOSES)[purpose], dtype=pl.String),
        "defaulted": defaulted,
    })


def farm_credit(n_farmers: int = 100_000, seed: int = SEED, canary: str | None = None) -> dict[str, pl.DataFrame]:
    """The three farm-credit datasets, linked by farmer_id."""
    roll = farmers(n_farmers, seed, canary)
    payments, mean_late = utility_payments(roll, seed)
    return {"farmers": roll, "utility_payments": payments, "loan_defaults": loan_defaults(roll, mean_late, seed)}


def inpatient_cohort(n: int = 50_000, seed: int = SEED, canary: str | None = None) -> pl.DataFrame:
    """A hospital's inpatient cohort (first admission per patient)."""
    rng = np.random.default_rng([seed, 4])
    band = rng.choice(len(AGE_BANDS), n, p=_BAND_SHARE)
    male = rng.random(n) < 0.52
    region = rng.choice(len(REGIONS), n, p=_REGION_SHARE)
    weights = np.clip(_DIAG_BASE[None, :] + _DIAG_AGE[None, :] * band[:, None], 0.005, None)
    weights /= weights.sum(axis=1, keepdims=True)
    diagnosis = (rng.random(n)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)
    diagnosis = np.minimum(diagnosis, len(DIAGNOSES) - 1)
    d = np.asarray(DIAGNOSES)[diagnosis]
    bp = 112 + 4.5 * band + 4 * male + np.where(d == "hypertension", 24, 0) \
        + np.where(np.isin(d, ["stroke", "chronic_kidney_disease"]), 12, 0) + rng.normal(0, 14, n)
    bp = np.clip(np.rint(bp), 70, 250).astype(np.int64)
    bmi = 23.6 + np.where(d == "type2_diabetes", 3.2, 0) + np.where(d == "copd", -1.5, 0) + rng.normal(0, 3.6, n)
    bmi = np.round(np.clip(bmi, 12, 60), 1)
    los = rng.gamma(2.0, (_DIAG_LOS[diagnosis] * (1 + 0.08 * band)) / 2.0)
    los = np.clip(np.rint(los), 0, 120).astype(np.int64)
    ids = pl.Series([f"P{i:08d}" for i in rng.permutation(n) + 1], dtype=pl.String)
    if canary is not None and n:
        ids = ids.scatter(int(rng.integers(0, n)), canary)
    return pl.DataFrame({
        "patient_id": ids,
        "sex": pl.Series(np.where(male, "male", "female"), dtype=pl.String),
        "age_band": pl.Series(np.asarray(AGE_BANDS)[band], dtype=pl.String),
        "region": pl.Series(np.asarray(REGIONS)[region], dtype=pl.String),
        "diagnosis": pl.Series(d, dtype=pl.String),
        "systolic_bp": bp,
        "bmi": bmi,
        "length_of_stay": los,
    })


def demo_frames(n_farmers: int = 100_000, n_patients: int = 50_000, seed: int = SEED,
                canary: str | None = None) -> dict[str, pl.DataFrame]:
    """Every demo dataset by name (the names declared in the example policies)."""
    frames = farm_credit(n_farmers, seed, canary)
    frames["inpatient_cohort"] = inpatient_cohort(n_patients, seed, canary)
    return frames


def write_demo_csvs(out_dir: Path, n_farmers: int = 100_000, n_patients: int = 50_000, seed: int = SEED,
                    canary: str | None = None) -> dict[str, Path]:
    """Write each demo dataset as ``<out_dir>/<name>.csv``; returns the paths by dataset name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in demo_frames(n_farmers, n_patients, seed, canary).items():
        path = out / f"{name}.csv"
        frame.write_csv(path)
        paths[name] = path
    return paths
