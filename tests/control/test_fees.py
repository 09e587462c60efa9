"""Every fresh answer is priced as it is charged: metered for commercial use, free for public welfare."""
from __future__ import annotations

from .conftest import ANALYST, World

QUERY = {"dataset": "farmers", "group_by": ["county"], "aggregates": [{"name": "n", "op": "count"}],
         "epsilon": 0.5}


def test_commercial_answer_is_metered_and_cached_answer_is_free(world: World) -> None:
    gid = world.grant(user_type="commercial")
    world.broker.ask(ANALYST, gid, QUERY)
    world.broker.ask(ANALYST, gid, {**QUERY, "aggregates": [{"op": "count", "name": "n"}]})  # same question
    fees = world.services.pricing.fees(gid)
    assert [(f["kind"], f["amount"]) for f in fees] == [("query", "402.00")]  # 2.00 + 800.00 x 0.5
    assert fees[0]["query"] == world.entries(gid, "query.charged")[0].objects["query"]


def test_public_welfare_answer_is_free_but_recorded(world: World) -> None:
    gid = world.grant(user_type="public_welfare")
    world.broker.ask(ANALYST, gid, QUERY)
    fees = world.services.pricing.fees(gid)
    assert [(f["kind"], f["amount"]) for f in fees] == [("query", "0.00")]
