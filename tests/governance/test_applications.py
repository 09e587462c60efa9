"""Applications: every transition allowed and refused, not-open and unconditional datasets,
deadlines in working days (paused while information is asked), overdue listing."""
from __future__ import annotations

import pytest

from sandbox.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyRefused
from tests.governance.conftest import ANALYST, OPERATOR, OTHER, PROVIDER, REVIEWER, beijing


def _apply(gov, actor=ANALYST, datasets=("credit",), **kw):
    args = dict(purpose="score farmers without credit history", scenario="rural microloans",
                epsilon=2.0, days=60, user_type="commercial")
    args.update(kw)
    return gov.applications.apply(actor, datasets=list(datasets), **args)


def test_submit_shows_deadline_and_is_audited(gov):
    app = _apply(gov)  # Monday 2 March 2026
    assert app["state"] == "submitted" and app["deadline"] == "2026-03-16"
    assert app["working_days_left"] == 10 and app["overdue"] is False and app["clock"] == "running"
    assert app["organisation"] == "Rural Bank" and app["history"][0]["kind"] == "submitted"
    entry = gov.entries("application.submitted")[-1]
    assert entry.objects == {"application": app["id"], "analyst": "ana", "datasets": ["credit"]}
    assert entry.details["deadline"] == "2026-03-16" and entry.purpose == app["purpose"]


def test_deadline_skips_holidays(gov):
    gov.clock.set(beijing(2026, 9, 30))
    assert _apply(gov)["deadline"] == "2026-10-20"


def test_approve_creates_the_grant_atomically(gov):
    app = _apply(gov)
    gov.clock.advance(days=3)
    done = gov.applications.approve(OPERATOR, app["id"], epsilon=1.5, note="purpose is clear")
    assert done["state"] == "approved" and done["answered_late"] is False and done["reason"] == "purpose is clear"
    grant = gov.services.grants.get(done["grant_id"])
    assert grant["analyst"] == "ana" and grant["datasets"] == ["credit"] and grant["user_type"] == "commercial"
    assert grant["budgets"][0]["epsilon_total"] == 1.5
    assert gov.actions()[-2:] == ["grant.created", "application.approved"]
    assert gov.entries("application.approved")[-1].grant_id == done["grant_id"]


def test_a_failing_grant_leaves_the_application_untouched(gov):
    app = _apply(gov)
    before = gov.seq()
    with pytest.raises(InvalidInput):
        gov.applications.approve(OPERATOR, app["id"], epsilon=-1)
    with pytest.raises(InvalidInput):
        gov.applications.approve(OPERATOR, app["id"], days=0)
    assert gov.applications.get(app["id"])["state"] == "submitted"
    assert gov.seq() == before and gov.services.grants.list() == []


def test_refuse_needs_a_reason(gov):
    app = _apply(gov)
    for reason in ("", "   "):
        with pytest.raises(InvalidInput, match="reason"):
            gov.applications.refuse(OPERATOR, app["id"], reason)
    done = gov.applications.refuse(OPERATOR, app["id"], "the scenario does not need personal records")
    assert done["state"] == "refused" and done["reason"].startswith("the scenario")
    assert gov.entries("application.refused")[-1].details["reason"].startswith("the scenario")
    assert done["grant_id"] is None


def test_ask_pauses_the_clock_and_reply_resumes_it(gov):
    app = _apply(gov)  # deadline Mon 16 March
    gov.clock.set(beijing(2026, 3, 5))  # Thursday: 7 working days left
    asked = gov.applications.ask_info(OPERATOR, app["id"], "which loan products?")
    assert asked["state"] == "info_requested" and asked["deadline"] is None
    assert asked["working_days_left"] == 7 and asked["clock"].startswith("paused")
    gov.clock.set(beijing(2026, 4, 20))  # long after the old deadline: paused, so not overdue
    assert gov.applications.get(app["id"])["overdue"] is False
    assert gov.applications.list(overdue=True) == []
    replied = gov.applications.reply(ANALYST, app["id"], "unsecured microloans under 50,000 yuan")
    assert replied["state"] == "submitted" and replied["working_days_left"] == 7
    assert replied["deadline"] == "2026-04-29"  # 7 working days after Monday 20 April
    assert [m["kind"] for m in replied["history"]] == ["submitted", "question", "reply"]
    assert gov.entries("application.info_requested")[-1].details == {
        "question": "which loan products?", "working_days_left": 7}
    assert gov.entries("application.replied")[-1].details["deadline"] == "2026-04-29"


def test_overdue_listed_sorted_and_late_answer_marked(gov):
    first = _apply(gov)  # deadline 16 March
    gov.clock.set(beijing(2026, 3, 4))
    second = _apply(gov, actor=OTHER)  # deadline 18 March
    gov.clock.set(beijing(2026, 3, 17))
    listed = gov.applications.list()
    assert [a["id"] for a in listed] == [first["id"], second["id"]]  # by deadline
    overdue = gov.applications.list(overdue=True)
    assert [a["id"] for a in overdue] == [first["id"]]
    assert overdue[0]["working_days_left"] == -1
    assert [a["id"] for a in gov.applications.list(overdue=False)] == [second["id"]]
    assert gov.applications.get(second["id"])["working_days_left"] == 1
    gov.clock.set(beijing(2026, 3, 21))  # a Saturday: still one working day overdue
    assert gov.applications.get(first["id"])["working_days_left"] == -4
    done = gov.applications.approve(OPERATOR, first["id"])
    assert done["answered_late"] is True and done["overdue"] is False
    assert gov.entries("application.approved")[-1].details["late"] is True
    assert [a["id"] for a in gov.applications.list(analyst="bob")] == [second["id"]]
    assert [a["id"] for a in gov.applications.list(state="approved")] == [first["id"]]
    with pytest.raises(InvalidInput):
        gov.applications.list(state="pending")


def test_withdraw(gov):
    app = _apply(gov)
    with pytest.raises(Forbidden):
        gov.applications.withdraw(OTHER, app["id"])
    done = gov.applications.withdraw(ANALYST, app["id"])
    assert done["state"] == "withdrawn" and gov.actions()[-1] == "application.withdrawn"


@pytest.mark.parametrize("final", ["approved", "refused", "withdrawn"])
def test_final_states_refuse_every_action(gov, final):
    app = _apply(gov)
    if final == "approved":
        gov.applications.approve(OPERATOR, app["id"])
    elif final == "refused":
        gov.applications.refuse(OPERATOR, app["id"], "no")
    else:
        gov.applications.withdraw(ANALYST, app["id"])
    before = gov.seq()
    attempts = [
        lambda: gov.applications.approve(OPERATOR, app["id"]),
        lambda: gov.applications.refuse(OPERATOR, app["id"], "again"),
        lambda: gov.applications.ask_info(OPERATOR, app["id"], "?"),
        lambda: gov.applications.reply(ANALYST, app["id"], "!"),
        lambda: gov.applications.withdraw(ANALYST, app["id"]),
    ]
    for attempt in attempts:
        with pytest.raises(Conflict, match=f"it is {final}") as e:
            attempt()
        assert e.value.code == "conflict" and e.value.hint
    assert gov.seq() == before and len(gov.services.grants.list()) == (1 if final == "approved" else 0)


def test_transitions_from_open_states(gov):
    app = _apply(gov)
    with pytest.raises(Conflict, match="submitted"):
        gov.applications.reply(ANALYST, app["id"], "unasked")
    gov.applications.ask_info(OPERATOR, app["id"], "why?")
    with pytest.raises(Conflict, match="info requested"):
        gov.applications.ask_info(OPERATOR, app["id"], "again?")
    # the operator may still decide while waiting; a paused clock is never late
    gov.clock.set(beijing(2026, 6, 1))
    done = gov.applications.refuse(OPERATOR, app["id"], "no answer came")
    assert done["answered_late"] is False
    other = _apply(gov)
    gov.applications.ask_info(OPERATOR, other["id"], "why?")
    assert gov.applications.withdraw(ANALYST, other["id"])["state"] == "withdrawn"
    third = _apply(gov)
    gov.applications.ask_info(OPERATOR, third["id"], "why?")
    assert gov.applications.approve(OPERATOR, third["id"])["state"] == "approved"


def test_roles(gov):
    app = _apply(gov)
    for actor in (ANALYST, PROVIDER, REVIEWER):
        with pytest.raises(Forbidden):
            gov.applications.approve(actor, app["id"])
        with pytest.raises(Forbidden):
            gov.applications.refuse(actor, app["id"], "no")
        with pytest.raises(Forbidden):
            gov.applications.ask_info(actor, app["id"], "?")
    for actor in (OPERATOR, PROVIDER, REVIEWER):
        with pytest.raises(Forbidden):
            _apply(gov, actor=actor)
    gov.applications.ask_info(OPERATOR, app["id"], "?")
    with pytest.raises(Forbidden):
        gov.applications.reply(OTHER, app["id"], "not mine")


def test_not_open_is_refused_with_the_reason(gov):
    before = gov.seq()
    with pytest.raises(PolicyRefused, match="closed are classed not open") as e:
        _apply(gov, datasets=("credit", "closed"))
    assert e.value.hint and gov.seq() == before and gov.applications.list() == []


def test_unconditional_needs_no_review(gov):
    app = _apply(gov, datasets=("open_stats",), user_type="public_welfare", epsilon=None)
    assert app["state"] == "approved" and app["auto_approved"] is True and app["grant_id"]
    assert app["decided_by"] == "sandbox"
    assert gov.actions()[-3:] == ["application.submitted", "grant.created", "application.auto_approved"]
    grant = gov.services.grants.get(app["grant_id"])
    assert grant["budgets"][0]["epsilon_total"] == 4.0  # the policy's default
    mixed = _apply(gov, datasets=("open_stats", "credit"))
    assert mixed["state"] == "submitted" and mixed["auto_approved"] is False


@pytest.mark.parametrize("change, message", [
    ({"datasets": ()}, "at least one dataset"),
    ({"purpose": "  "}, "purpose"),
    ({"scenario": ""}, "scenario"),
    ({"purpose": "x" * 5000}, "at most"),
    ({"epsilon": 0}, "epsilon"),
    ({"epsilon": float("nan")}, "epsilon"),
    ({"days": 0}, "term"),
    ({"user_type": "charity"}, "user type"),
])
def test_bad_applications(gov, change, message):
    with pytest.raises(InvalidInput, match=message):
        _apply(gov, **change)


def test_unknown(gov):
    with pytest.raises(NotFound):
        _apply(gov, datasets=("nope",))
    with pytest.raises(NotFound):
        gov.applications.get("a-00000000")
    with pytest.raises(NotFound):
        gov.applications.approve(OPERATOR, "a-00000000")
