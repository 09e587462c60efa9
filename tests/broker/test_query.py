"""The query language: every rule refused with its field path, before any data is touched."""
from __future__ import annotations

import copy
import json

import pytest

from sandbox.broker.query import MAX_AGGREGATES, Query, Scope, cost, parse_query
from sandbox.errors import PolicyRefused, QueryInvalid

from .conftest import CANARY, EXAMPLE_QUERY, make_policy

BASE = EXAMPLE_QUERY


def with_(**changes):
    doc = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


def agg(i, **changes):
    doc = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is None:
            doc["aggregates"][i].pop(k, None)
        else:
            doc["aggregates"][i][k] = v
    return doc


def filt(i, **changes):
    doc = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is None:
            doc["filter"][i].pop(k, None)
        else:
            doc["filter"][i][k] = v
    return doc


def test_example_parses(policy):
    q = parse_query(BASE, policy)
    assert isinstance(q, Query)
    assert q.group_by == ("county",)
    assert [a.name for a in q.aggregates] == ["n", "income", "total", "median_income", "income_hist"]
    assert cost(q) == (0.5, 0.0)


def test_kind_defaults_to_aggregate(policy):
    assert parse_query(with_(kind=None), policy).kind == "aggregate"


INVALID = [
    ([1, 2], "query"),
    (with_(extra=1), "query"),
    (with_(kind="model"), "kind"),
    (with_(kind="sql"), "kind"),
    (with_(dataset=None), "dataset"),
    (with_(dataset="other"), "dataset"),
    (with_(epsilon=None), "epsilon"),
    (with_(epsilon=0), "epsilon"),
    (with_(epsilon=-1), "epsilon"),
    (with_(epsilon="1"), "epsilon"),
    (with_(epsilon=True), "epsilon"),
    (with_(epsilon=float("nan")), "epsilon"),
    (with_(aggregates=None), "aggregates"),
    (with_(aggregates=[]), "aggregates"),
    (with_(aggregates=[{"name": f"n{i}", "op": "count"} for i in range(MAX_AGGREGATES + 1)]), "aggregates"),
    (with_(group_by="county"), "group_by"),
    (with_(group_by=["county", "county"]), "group_by[1]"),
    (with_(group_by=["county", "crop", "insured", "county"]), "group_by"),
    (with_(group_by=["nope"]), "group_by[0]"),
    (with_(filter={"column": "age"}), "filter"),
    (filt(0, column="nope"), "filter[0].column"),
    (filt(0, op="~"), "filter[0].op"),
    (filt(0, value="30"), "filter[0].value"),
    (filt(0, value=None, values=[30]), "filter[0].value"),
    (filt(0, extra=1), "filter[0]"),
    (filt(1, values=[]), "filter[1].values"),
    (filt(1, values=["rice", "barley"]), "filter[1].values[1]"),
    (filt(1, values=[1]), "filter[1].values[0]"),
    (filt(1, op=">="), "filter[1].op"),
    (agg(0, name="1bad"), "aggregates[0].name"),
    (agg(0, name="county"), "aggregates[0].name"),
    (agg(0, name="bin"), "aggregates[0].name"),
    (agg(0, name="income"), "aggregates[1].name"),
    (agg(0, name="income_ci_low"), "aggregates[1].name"),
    (agg(0, op="median"), "aggregates[0].op"),
    (agg(0, column="age"), "aggregates[0].column"),
    (agg(0, extra=1), "aggregates[0]"),
    (agg(1, column=None), "aggregates[1].column"),
    (agg(1, column="nope"), "aggregates[1].column"),
    (agg(1, q=0.5), "aggregates[1].q"),
    (agg(3, q=None), "aggregates[3].q"),
    (agg(3, q=0), "aggregates[3].q"),
    (agg(3, q=1), "aggregates[3].q"),
    (agg(3, q="half"), "aggregates[3].q"),
    (with_(aggregates=BASE["aggregates"] + [{"name": "h2", "op": "histogram", "column": "income_yuan"}]),
     "aggregates[5].op"),
]


@pytest.mark.parametrize("doc,path", INVALID)
def test_invalid_names_the_field(policy, doc, path):
    with pytest.raises(QueryInvalid) as e:
        parse_query(doc, policy)
    assert e.value.message.startswith(path + ":") or e.value.message.startswith(path + ".")
    assert e.value.code == "query_invalid"


REFUSED = [
    (with_(epsilon=1000), "epsilon"),
    (with_(group_by=["age"]), "group_by[0]"),  # no declared categories
    (agg(1, column="crop"), "aggregates[1].column"),  # not numeric
    (agg(4, column="subsidy_yuan"), "aggregates[4].column"),  # no bins
]


@pytest.mark.parametrize("doc,path", REFUSED)
def test_refused_names_the_field(policy, doc, path):
    with pytest.raises(PolicyRefused) as e:
        parse_query(doc, policy)
    assert e.value.message.startswith(path + ":")


@pytest.mark.parametrize("where", ["filter", "group_by", "aggregate"])
@pytest.mark.parametrize("column", ["farmer_id", "name"])
def test_identifiers_are_refused_everywhere(policy, where, column):
    if where == "filter":
        doc, path = filt(0, column=column, op="==", value="x"), "filter[0].column"
    elif where == "group_by":
        doc, path = with_(group_by=[column]), "group_by[0]"
    else:
        doc, path = agg(1, column=column), "aggregates[1].column"
    with pytest.raises(PolicyRefused) as e:
        parse_query(doc, policy)
    assert e.value.message.startswith(path + ":")
    assert "identifier" in e.value.message


def test_operation_not_allowed_by_policy():
    pol = make_policy(allowed_operations=frozenset({"count", "sum"}))
    with pytest.raises(PolicyRefused) as e:
        parse_query(BASE, pol)
    assert e.value.message.startswith("aggregates[1].op:")


def test_scope_limits_operations_and_columns(policy):
    with pytest.raises(PolicyRefused) as e:
        parse_query(BASE, policy, Scope(operations=frozenset({"count"})))
    assert e.value.message.startswith("aggregates[1].op:")
    cols = frozenset({"county", "crop", "income_yuan", "subsidy_yuan"})
    with pytest.raises(PolicyRefused) as e:
        parse_query(BASE, policy, Scope(columns=cols))
    assert e.value.message.startswith("filter[0].column:")  # age is outside the scope
    parse_query(BASE, policy, Scope(columns=cols | {"age"}, operations=None))


def test_too_many_cells(policy):
    big = make_policy(columns=tuple(
        c if c.name != "county" else type(c)(c.name, c.type, c.tag, categories=tuple(f"c{i}" for i in range(5000)))
        for c in policy.columns))
    with pytest.raises(QueryInvalid) as e:
        parse_query(with_(group_by=["county", "insured"]), big)
    assert e.value.message.startswith("group_by:")


def test_errors_never_echo_caller_values(policy):
    docs = [filt(1, values=[CANARY]), filt(0, value=CANARY), with_(group_by=[CANARY]),
            agg(1, column=CANARY), agg(0, name=CANARY + "!"), with_(dataset=CANARY),
            filt(0, column=CANARY), with_(**{CANARY: 1}), agg(3, q=CANARY)]
    for doc in docs:
        with pytest.raises((QueryInvalid, PolicyRefused)) as e:
            parse_query(doc, policy)
        text = json.dumps(e.value.to_dict())
        assert CANARY not in text, text


def test_digest_ignores_order_and_spelling(policy):
    a = parse_query(BASE, policy)
    doc = json.loads(json.dumps(BASE))
    doc["filter"].reverse()
    doc["filter"][0]["values"] = ["wheat", "rice", "wheat"]
    doc = dict(reversed(list(doc.items())))  # key order
    doc.pop("kind")
    doc["filter"][1]["value"] = 30.0
    b = parse_query(doc, policy)
    assert a.canonical() == b.canonical()
    assert a.digest() == b.digest()
    g1 = parse_query(with_(group_by=["county", "crop"]), policy)
    g2 = parse_query(with_(group_by=["crop", "county"]), policy)
    assert g1.digest() == g2.digest()


def test_digest_differs_for_different_questions(policy):
    a = parse_query(BASE, policy)
    assert a.digest() != parse_query(with_(epsilon=0.25), policy).digest()
    assert a.digest() != parse_query(filt(0, value=31), policy).digest()
    assert a.digest() != parse_query(agg(3, q=0.25), policy).digest()


def test_query_is_immutable(policy):
    q = parse_query(BASE, policy)
    with pytest.raises(AttributeError):
        q.epsilon = 3  # type: ignore[misc]
