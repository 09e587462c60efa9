"""Policy files: both examples load; every kind of mistake is named with its field path and line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from .conftest import FARM, HEALTH

from sandbox.errors import NotFound, PolicyInvalid
from sandbox.policy import (
    OPERATIONS,
    ColumnType,
    Grade,
    Openness,
    Policy,
    Tag,
    load_policy,
    load_policy_file,
)


def test_examples_load():
    farm = load_policy_file(FARM)
    assert set(farm) == {"farmers", "utility_payments", "loan_defaults"}
    health = load_policy_file(HEALTH)
    assert set(health) == {"inpatient_cohort"}
    for policy in [*farm.values(), *health.values()]:
        assert policy.source == str(policy.source) and policy.source.endswith(".yaml")
        assert policy.allowed_operations <= OPERATIONS
        assert policy.column(policy.privacy_unit.column).tag is Tag.IDENTIFIER
        assert 0 <= policy.delta < 1 and policy.max_epsilon_per_query > 0
        assert "prices" in policy.extra


def test_defaults_and_overrides():
    farmers = load_policy(FARM, "farmers")
    payments = load_policy(FARM, "utility_payments")
    loans = load_policy(FARM, "loan_defaults")
    assert farmers.openness is Openness.CONDITIONAL and farmers.grade is Grade.GENERAL_3
    assert payments.grade is Grade.GENERAL_2  # from defaults
    assert payments.privacy_unit.max_rows == 12
    assert farmers.delta == 1e-7  # written 1e-7: read as a number, not a string
    income = farmers.column("income_yuan")
    assert income.type is ColumnType.FLOAT and income.tag is Tag.SENSITIVE
    assert income.bounds == (0, 300000) and income.bins[0] == 0
    assert payments.column("month").categories[0] == "2025-01"
    assert len(farmers.column("county").categories) == 8
    # prices merge one level deep: the dataset overrides only what it names
    assert loans.extra["prices"]["commercial"]["per_epsilon"] == 1500.0
    assert loans.extra["prices"]["commercial"]["ceiling"] == 50000
    assert loans.extra["prices"]["public_welfare"] == "free"


def test_round_trip_through_json():
    for policy in load_policy_file(FARM).values():
        again = Policy.from_dict(json.loads(json.dumps(policy.to_dict())))
        assert again == policy
        assert again.extra == policy.extra and again.source == policy.source


def test_from_dict_malformed():
    d = load_policy(HEALTH, "inpatient_cohort").to_dict()
    d["grade"] = "secret"
    with pytest.raises(PolicyInvalid):
        Policy.from_dict(d)


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(NotFound) as e:
        load_policy(FARM, "farmer")
    assert "farmers" in e.value.hint
    with pytest.raises(NotFound):
        load_policy_file(tmp_path / "nope.yaml")


def _line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


# (case, old text, new text, expected field path, text on the expected line, words in the message)
CASES = [
    ("unknown key", "        tag: sensitive\n        description: Self-declared",
     "        tga: sensitive\n        description: Self-declared",
     "datasets.farmers.columns[7](income_yuan).tga", "tga: sensitive", "unknown key 'tga'"),
    ("unknown top key", "datasets:\n", "dataset_list: {}\ndatasets:\n",
     "dataset_list", "dataset_list:", "unknown key"),
    ("bad enum", "  openness: conditional", "  openness: open",
     "defaults.openness", "openness: open", "'open' is not allowed"),
    ("bounds on category", "categories: [wheat,", "bounds: [0, 1]\n        categories: [wheat,",
     "datasets.farmers.columns[3](crop).bounds", "bounds: [0, 1]", "only allowed on integer or float"),
    ("low >= high", "bounds: [18, 90]", "bounds: [90, 18]",
     "datasets.farmers.columns[4](age).bounds", "bounds: [90, 18]", "low < high"),
    ("bounds arity", "bounds: [18, 90]", "bounds: [18]",
     "datasets.farmers.columns[4](age).bounds", "bounds: [18]", "exactly 2"),
    ("categories on numeric", "        bounds: [1, 12]", "        bounds: [1, 12]\n        categories: [a]",
     "datasets.farmers.columns[5](household_size).categories", "categories: [a]", "only allowed on category"),
    ("empty categories", "categories: [wheat, maize, soybean, peanut, cotton, vegetables, fruit, sesame]",
     "categories: []", "datasets.farmers.columns[3](crop).categories", "categories: []", "at least 1"),
    ("duplicate categories", "[wheat, maize,", "[wheat, wheat, maize,",
     "datasets.farmers.columns[3](crop).categories", "[wheat, wheat, maize,", "more than once"),
    ("category without list", "        categories: [wheat, maize, soybean, peanut, cotton, vegetables, fruit, sesame]\n",
     "", "datasets.farmers.columns[3](crop)", "name: crop", "no categories"),
    ("bins unsorted", "bins: [0, 5, 10, 20, 50, 100, 200]", "bins: [0, 10, 5, 200]",
     "datasets.farmers.columns[6](land_mu).bins", "bins: [0, 10, 5, 200]", "strictly increasing"),
    ("bins outside bounds", "bins: [0, 5, 10, 20, 50, 100, 200]", "bins: [0, 5, 10, 20, 50, 100, 250]",
     "datasets.farmers.columns[6](land_mu).bins", "bins: [0, 5, 10, 20, 50, 100, 250]", "inside its bounds"),
    ("numeric without bounds", "        bounds: [1, 12]\n", "",
     "datasets.farmers.columns[5](household_size)", "name: household_size", "no bounds"),
    ("identifier with bounds", "{name: name, type: string, tag: identifier,",
     "{name: name, type: string, tag: identifier, bounds: [0, 1],",
     "datasets.farmers.columns[1](name).bounds", "{name: name, type: string", "identifier column 'name' cannot"),
    ("free text not identifier", "{name: name, type: string, tag: identifier,", "{name: name, type: string, tag: public,",
     "datasets.farmers.columns[1](name).type", "{name: name, type: string", "has type string but tag public"),
    ("privacy unit not identifier", "privacy_unit: {column: farmer_id, max_rows: 12}",
     "privacy_unit: {column: county, max_rows: 12}",
     "datasets.utility_payments.privacy_unit.column", "{column: county, max_rows: 12}", "not identifier"),
    ("privacy unit missing column", "privacy_unit: {column: farmer_id, max_rows: 3}",
     "privacy_unit: {column: farmerid, max_rows: 3}",
     "datasets.loan_defaults.privacy_unit.column", "{column: farmerid", "not a column"),
    ("max_rows zero", "privacy_unit: {column: farmer_id, max_rows: 3}", "privacy_unit: {column: farmer_id, max_rows: 0}",
     "datasets.loan_defaults.privacy_unit.max_rows", "max_rows: 0}", "must be >= 1"),
    ("epsilon zero", "    max_epsilon_per_query: 0.5", "    max_epsilon_per_query: 0",
     "datasets.loan_defaults.max_epsilon_per_query", "    max_epsilon_per_query: 0", "must be > 0"),
    ("epsilon over budget", "    max_epsilon_per_query: 0.5", "    max_epsilon_per_query: 5",
     "datasets.loan_defaults.max_epsilon_per_query", "    max_epsilon_per_query: 5", "exceeds"),
    ("delta one", "  delta: 1e-7", "  delta: 1", "defaults.delta", "  delta: 1", "must be < 1"),
    ("delta text", "  delta: 1e-7", "  delta: tiny", "defaults.delta", "  delta: tiny", "must be a number"),
    ("operation", "[count, sum, mean, quantile, histogram]", "[count, sum, regression]",
     "defaults.allowed_operations[2]", "[count, sum, regression]", "'regression' is not allowed"),
    ("unquoted date category", '"2025-01",', "2025-01-01,",
     "datasets.utility_payments.columns[2](month).categories[0]", "2025-01-01,", "must be a string"),
    ("duplicate key", "    grade: general-3", "    grade: general-3\n    grade: core",
     "datasets.farmers.grade", "    grade: core", "given twice"),
    ("duplicate column", "      - {name: name, type: string", "      - {name: farmer_id, type: string",
     "datasets.farmers.columns[1](farmer_id).name", "{name: farmer_id, type: string, tag: identifier, description: \"Full",
     "declared twice"),
    ("missing title", "    title: Farmer subsidy roll 2025\n", "",
     "datasets.farmers", "  farmers:", "missing required key 'title'"),
    ("bad dataset name", "  farmers:\n", "  Farmers:\n", "datasets.Farmers", "  Farmers:", "not a valid dataset name"),
    ("yaml syntax", "  farmers:\n", "  farmers\n", "", "  farmers", "not valid YAML"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_error_names_field_and_line(tmp_path: Path, case):
    _, old, new, field, line_text, words = case
    text = FARM.read_text(encoding="utf-8")
    assert old in text, "test case no longer matches the example file"
    broken = text.replace(old, new, 1)
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(PolicyInvalid) as e:
        load_policy_file(path)
    err = e.value
    problems = err.problems  # type: ignore[attr-defined]
    match = [p for p in problems if p.path == field and words in p.message]
    assert match, f"no problem at {field!r} with {words!r}: {str(err)}"
    problem = match[0]
    if field:  # a YAML syntax error is reported where the parser noticed it
        assert problem.line == _line_of(broken, line_text), str(err)
    assert str(path) in err.message and f":{problem.line}:" in err.message
    assert err.hint  # what to do
    assert problem.hint


def test_several_problems_reported_at_once(tmp_path):
    text = FARM.read_text(encoding="utf-8")
    broken = text.replace("bounds: [18, 90]", "bounds: [90, 18]").replace(
        "bins: [0, 5, 10, 20, 50, 100, 200]", "bins: [0, 10, 5, 200]")
    path = tmp_path / "two.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(PolicyInvalid) as e:
        load_policy_file(path)
    assert len(e.value.problems) == 2  # type: ignore[attr-defined]
    assert "2 problems" in e.value.message


def test_missing_setting_without_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "datasets:\n  t:\n    title: T\n    columns:\n      - {name: id, type: string, tag: identifier}\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyInvalid) as e:
        load_policy_file(path)
    messages = [p.message for p in e.value.problems]  # type: ignore[attr-defined]
    assert "no provider is set" in messages and "no privacy_unit is set" in messages
    assert all(p.line == 2 for p in e.value.problems)  # type: ignore[attr-defined]


def test_empty_and_non_utf8_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(PolicyInvalid, match="empty"):
        load_policy_file(empty)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00datasets")
    with pytest.raises(PolicyInvalid, match="UTF-8"):
        load_policy_file(binary)


def test_docs_example_loads():
    doc = (FARM.parents[1] / "docs" / "policies.md").read_text(encoding="utf-8")
    example = doc.split("## Example", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    from sandbox.policy import parse_policy_text

    policy = parse_policy_text(example, "docs/policies.md")["loan_defaults"]
    assert policy.privacy_unit.max_rows == 3 and policy.extra["prices"]["public_welfare"] == "free"
    # the error shown in the docs is the one the example policy file gives
    broken = FARM.read_text(encoding="utf-8").replace("bounds: [18, 90]", "bounds: [90, 18]")
    with pytest.raises(PolicyInvalid) as e:
        parse_policy_text(broken, "policies/farm-credit.yaml")
    first = e.value.problems[0].render("policies/farm-credit.yaml")  # type: ignore[attr-defined]
    assert first in doc
