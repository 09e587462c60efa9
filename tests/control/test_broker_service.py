"""Broker.ask through Services: validation, ledger, stored answers, audit and OpenDP together."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from sandbox import grants, ledger
from sandbox.broker.answers import StoredAnswer
from sandbox.broker.service import BrokerFailed
from sandbox.errors import BudgetExceeded, GrantInactive, PolicyRefused, QueryInvalid, SandboxError

from .conftest import ANALYST, CANARY, OPERATOR, World, seen, seen_error


def by_county(epsilon: float = 0.5, **extra) -> dict:
    return {"dataset": "farmers", "group_by": ["county"], "epsilon": epsilon,
            "aggregates": [{"name": "n", "op": "count"},
                           {"name": "income", "op": "mean", "column": "income_yuan"}], **extra}


# -- 1. one answer, end to end ------------------------------------------------------------


def test_answer_has_estimates_intervals_cost_and_budget_left(world: World) -> None:
    gid = world.grant(epsilon=2.0)
    answer = seen(world.broker.ask(ANALYST, gid, by_county(0.5)))
    cols = answer["columns"]
    assert cols == ["county", "n", "n_ci_low", "n_ci_high", "income", "income_ci_low", "income_ci_high"]
    assert len(answer["rows"]) == 8 and answer["mock"] is False
    for row in answer["rows"]:
        r = dict(zip(cols, row))
        assert r["n_ci_low"] <= r["n"] <= r["n_ci_high"]
        assert r["income_ci_low"] <= r["income"] <= r["income_ci_high"]
    assert sum(dict(zip(cols, r))["n"] for r in answer["rows"]) == pytest.approx(5000, rel=0.05)
    assert answer["epsilon_charged"] == 0.5 and answer["cached"] is False
    assert answer["budget_left"]["epsilon"] == pytest.approx(1.5)
    assert world.spent_units(gid) == ledger.to_units(0.5, ledger.EPSILON_UNIT)
    actions = [e.action for e in world.entries(gid)]
    assert actions == ["grant.created", "query.charged", "query.released"]


def test_same_question_reordered_is_free_and_identical(world: World) -> None:
    gid = world.grant(epsilon=2.0)
    first = world.broker.ask(ANALYST, gid, by_county(0.5))
    reordered = {"epsilon": 0.5, "aggregates": by_county()["aggregates"], "group_by": ["county"],
                 "kind": "aggregate", "dataset": "farmers"}
    again = seen(world.broker.ask(ANALYST, gid, reordered))
    assert again["cached"] is True and again["epsilon_charged"] == 0.0
    assert again["rows"] == first["rows"]
    assert again["budget_left"] == first["budget_left"]
    assert world.spent_units(gid) == ledger.to_units(0.5, ledger.EPSILON_UNIT)
    assert len(world.charges(gid)) == 1
    assert [e.action for e in world.entries(gid)][-1] == "query.cached"


def test_another_grant_pays_again(world: World) -> None:
    g1, g2 = world.grant(epsilon=2.0), world.grant(epsilon=2.0)
    a1 = world.broker.ask(ANALYST, g1, by_county(0.4))
    a2 = world.broker.ask(ANALYST, g2, by_county(0.4))
    assert not a1["cached"] and not a2["cached"]
    assert a2["epsilon_charged"] == 0.4
    assert world.spent_units(g1) == world.spent_units(g2) == ledger.to_units(0.4, ledger.EPSILON_UNIT)


def test_preview_spends_nothing_and_knows_the_cache(world: World) -> None:
    gid = world.grant(epsilon=2.0)
    before = len(world.entries())
    info = seen(world.broker.preview(ANALYST, gid, by_county(0.3)))
    assert info["epsilon"] == 0.3 and info["cached"] is False
    assert info["budget_left"]["epsilon"] == 2.0
    assert all(s["ci95_half_width"] > 0 for s in info["accuracy"].values())
    assert world.spent_units(gid) == 0 and world.charges(gid) == []
    assert len(world.entries()) == before  # a preview is not a release
    world.broker.ask(ANALYST, gid, by_county(0.3))
    info = world.broker.preview(ANALYST, gid, by_county(0.3))
    assert info["cached"] is True and info["epsilon"] == 0.0
    assert world.spent_units(gid) == ledger.to_units(0.3, ledger.EPSILON_UNIT)


# -- 2. concurrency -----------------------------------------------------------------------


def test_fifty_concurrent_queries_never_overspend(world: World) -> None:
    gid = world.grant(epsilon=1.0)
    eps = 0.07  # 14 fit exactly-ish (0.98); the other 36 must be refused
    ok: list[dict] = []
    refused: list[SandboxError] = []
    other: list[BaseException] = []
    barrier = threading.Barrier(50)

    def one(i: int) -> None:
        doc = {"dataset": "farmers", "epsilon": eps, "aggregates": [{"name": "n", "op": "count"}],
               "filter": [{"column": "age", "op": ">=", "value": 18 + i}]}
        barrier.wait()
        try:
            ok.append(world.broker.ask(ANALYST, gid, doc))
        except BudgetExceeded as err:
            refused.append(seen_error(err))
        except BaseException as err:  # noqa: BLE001 - reported below
            other.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    assert len(ok) == 14 and len(refused) == 36
    unit = ledger.to_units(eps, ledger.EPSILON_UNIT)
    charges = world.charges(gid)
    assert len(charges) == 14 and all(c.epsilon == unit for c in charges)
    with world.services.db.transaction() as s:
        row = s.get(ledger.Budget, (gid, "farmers"))
        assert row.epsilon_spent == 14 * unit <= row.epsilon_total
    assert len(world.entries(gid, "query.charged")) == len(ok)
    assert len(world.entries(gid, "query.released")) == len(ok)
    refusals = world.entries(gid, "query.refused")
    assert len(refusals) == 36 and {e.outcome for e in refusals} == {"budget_exceeded"}
    assert len({tuple(map(tuple, a["rows"])) for a in ok}) >= 1
    assert all(not a["cached"] for a in ok)


def test_twenty_threads_same_question_charged_once(world: World) -> None:
    gid = world.grant(epsilon=1.0)
    answers: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        barrier.wait()
        try:
            answers.append(world.broker.ask(ANALYST, gid, by_county(0.25)))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(answers) == 20
    assert sum(not a["cached"] for a in answers) == 1
    assert len({repr(a["rows"]) for a in answers}) == 1
    assert len(world.charges(gid)) == 1
    assert world.spent_units(gid) == ledger.to_units(0.25, ledger.EPSILON_UNIT)
    assert len(world.entries(gid, "query.charged")) == 1
    assert len(world.entries(gid, "query.cached")) == 19


# -- 3. refusals ---------------------------------------------------------------------------


def _refused(world: World, gid: str, doc, kind: type[SandboxError], outcome: str, words: str) -> SandboxError:
    before_units = {d: world.spent_units(gid, d) for d in world.services.grants.get(gid)["datasets"]}
    before_refusals = len(world.entries(gid, "query.refused"))
    with pytest.raises(kind) as info:
        world.broker.ask(ANALYST, gid, doc)
    err = seen_error(info.value)
    assert words in err.message, err.message
    assert err.hint, "every refusal says what to do"
    assert type(err).__name__ != "InvalidInput" or err.code == outcome
    after = world.entries(gid, "query.refused")
    assert len(after) == before_refusals + 1
    assert after[-1].outcome == outcome and after[-1].actor == ANALYST.name
    assert after[-1].details["reason"] == err.message
    assert {d: world.spent_units(gid, d) for d in before_units} == before_units
    return err


def test_expired_grant_is_refused(world: World) -> None:
    gid = world.grant()
    with world.services.db.transaction() as s:
        s.get(grants.Grant, gid).expires_at = datetime.now(timezone.utc) - timedelta(minutes=1)
    _refused(world, gid, by_county(), GrantInactive, "grant_inactive", "expired")
    assert world.charges(gid) == []


def test_revocation_takes_effect_at_once(world: World) -> None:
    gid = world.grant()
    world.broker.ask(ANALYST, gid, by_county(0.2))
    world.services.grants.revoke(OPERATOR, gid, "purpose fulfilled")
    _refused(world, gid, by_county(0.3), GrantInactive, "grant_inactive", "revoked")
    # not even the stored answer comes back once the grant is revoked
    _refused(world, gid, by_county(0.2), GrantInactive, "grant_inactive", "revoked")
    with pytest.raises(GrantInactive):
        world.broker.preview(ANALYST, gid, by_county(0.2))
    assert len(world.charges(gid)) == 1


def test_dataset_not_covered(world: World) -> None:
    gid = world.grant(datasets=("farmers",))
    doc = {"dataset": "loan_defaults", "epsilon": 0.1, "aggregates": [{"name": "n", "op": "count"}]}
    _refused(world, gid, doc, PolicyRefused, "policy_refused", "does not cover dataset loan_defaults")


@pytest.mark.parametrize("doc", [
    {"dataset": "farmers", "epsilon": 0.1, "aggregates": [{"name": "n", "op": "count"}],
     "filter": [{"column": "farmer_id", "op": "==", "value": "ZK0000001"}]},
    {"dataset": "farmers", "epsilon": 0.1, "aggregates": [{"name": "n", "op": "count"}], "group_by": ["name"]},
])
def test_identifier_columns_are_refused(world: World, doc: dict) -> None:
    gid = world.grant()
    _refused(world, gid, doc, PolicyRefused, "policy_refused", "identifier")


def test_over_the_per_query_cap(world: World) -> None:
    gid = world.grant(epsilon=4.0)
    _refused(world, gid, by_county(1.5), PolicyRefused, "policy_refused", "maximum per query")


def test_over_the_budget(world: World) -> None:
    gid = world.grant(epsilon=0.5)
    _refused(world, gid, by_county(0.6), BudgetExceeded, "budget_exceeded", "left on farmers")


@pytest.mark.parametrize("doc", [
    "not a query", ["farmers"], None, 42,
    {"dataset": "farmers"},
    {"dataset": "farmers", "epsilon": 0.1, "aggregates": [{"name": "n", "op": "count"}], "colour": "red"},
    {"dataset": "farmers", "epsilon": float("nan"), "aggregates": [{"name": "n", "op": "count"}]},
    {"dataset": "farmers", "epsilon": float("inf"), "aggregates": [{"name": "n", "op": "count"}]},
    {"dataset": "farmers", "epsilon": 0.1, "aggregates": [{"name": "n", "op": "count"}],
     "filter": [{"column": "age", "op": ">=", "value": float("nan")}]},
])
def test_malformed_documents(world: World, doc) -> None:
    gid = world.grant()
    before = len(world.entries(gid, "query.refused"))
    with pytest.raises(QueryInvalid) as info:
        world.broker.ask(ANALYST, gid, doc)
    seen_error(info.value)
    assert info.value.hint
    refusals = world.entries(gid, "query.refused")
    assert len(refusals) == before + 1 and refusals[-1].outcome == "query_invalid"
    assert world.spent_units(gid) == 0


def test_unknown_grant_is_refused_and_audited(world: World) -> None:
    before = len(world.entries(None, "query.refused"))
    with pytest.raises(SandboxError) as info:
        world.broker.ask(ANALYST, "g-nosuch", by_county())
    seen_error(info.value)
    assert "no grant g-nosuch" in info.value.message and info.value.hint
    assert len(world.entries(None, "query.refused")) == before + 1


def test_filter_on_the_canary_is_refused_without_echo(world: World) -> None:
    """An analyst probing an identifier with a guessed value learns nothing, not even an echo."""
    gid = world.grant()
    doc = {"dataset": "farmers", "epsilon": 0.1, "aggregates": [{"name": "n", "op": "count"}],
           "filter": [{"column": "county", "op": "==", "value": "Atlantis"}]}
    with pytest.raises(QueryInvalid) as info:
        world.broker.ask(ANALYST, gid, doc)
    seen_error(info.value)


# -- 4. crash safety -----------------------------------------------------------------------


def test_engine_crash_keeps_the_charge_and_a_retry_works(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    gid = world.grant(epsilon=2.0)
    engine = world.broker.engine

    def boom(*args, **kwargs):
        raise RuntimeError(f"polars blew up on value {CANARY}")  # engines' messages may quote data

    monkeypatch.setattr(engine, "answer", boom)
    with pytest.raises(BrokerFailed) as info:
        world.broker.ask(ANALYST, gid, by_county(0.3))
    seen_error(info.value)
    assert "stays spent" in info.value.message and info.value.hint
    unit = ledger.to_units(0.3, ledger.EPSILON_UNIT)
    assert world.spent_units(gid) == unit and len(world.charges(gid)) == 1
    failed = world.entries(gid, "query.failed")
    assert len(failed) == 1 and failed[-1].outcome == "error"
    assert failed[-1].details == {"error": "RuntimeError"}
    with world.services.db.transaction() as s:
        assert s.query(StoredAnswer).filter_by(grant_id=gid).count() == 0
    monkeypatch.undo()

    answer = world.broker.ask(ANALYST, gid, by_county(0.3))
    assert answer["cached"] is False and answer["epsilon_charged"] == 0.3
    assert world.spent_units(gid) == 2 * unit
    assert world.broker.ask(ANALYST, gid, by_county(0.3))["cached"] is True
    assert world.services.audit.verify().ok


def test_answer_abandoned_by_a_dead_process_does_not_block_forever(world: World) -> None:
    """A process killed between reserving and releasing leaves a pending row; it must not wedge the question."""
    gid = world.grant(epsilon=2.0)
    query, version = world.broker._validate(ANALYST, gid, by_county(0.3), None)
    with world.services.db.transaction() as s:  # what a crash right after the reservation leaves
        ledger.reserve(s, gid, "farmers", 0.3, 0.0, query.digest())
        s.add(StoredAnswer(grant_id=gid, digest=query.digest(), dataset="farmers", dataset_version=version,
                           query=query.canonical(), status="pending", asked_by=ANALYST.name,
                           asked_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    answer = world.broker.ask(ANALYST, gid, by_county(0.3))
    assert answer["cached"] is False and answer["rows"]
    assert world.entries(gid, "query.abandoned")


def test_history_lists_released_answers(world: World) -> None:
    gid = world.grant(epsilon=2.0)
    world.broker.ask(ANALYST, gid, by_county(0.1))
    history = seen(world.broker.history(gid))
    assert [h["status"] for h in history] == ["released"] and history[0]["epsilon"] == 0.1
