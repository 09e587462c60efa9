"""Applications for access: the seeds' rule for conditional-open data.

An analyst applies for datasets with a purpose, a scenario, a requested budget and term, and a
user type (public-welfare or commercial). The operator (answering for the data owners) must
answer within ``response_working_days`` working days (10 by default; see
``policies/calendar.yaml``): approve (which creates the grant in the same transaction), refuse
with a reason, or ask for more information.

States and transitions (anything else is refused with ``Conflict``)::

    submitted      -> approved | refused | info_requested | withdrawn
    info_requested -> submitted (the analyst replies) | approved | refused | withdrawn
    approved, refused, withdrawn: final

Decisions made here:

* Not-open datasets cannot be applied for (``PolicyRefused`` naming each one and why).
* An application whose datasets are *all* unconditional-open needs no review: the grant is
  made at once by the system, the application is stored as ``approved`` with ``auto: true``
  and audited ``application.auto_approved``. (A grant is still needed: the broker charges every
  answer to a grant's budget.) An application mixing unconditional and conditional datasets is
  reviewed as a whole.
* The deadline is ``response_working_days`` working days after the day of submission (in the
  calendar's time zone). While more information is requested the clock is **paused**: the
  working days left at the moment of the question are kept, and when the analyst replies the
  deadline becomes that many working days after the day of the reply (as in the rules on
  government information, time spent supplementing an application is not counted). Asking
  after the deadline has passed resumes with 0 days left: the answer is then due on the day
  of the reply.
* A late decision is still allowed (and marked ``late`` in the audit and the application). A
  decision made while the clock is paused is never late; the last deadline stays shown.
* Only an operator (or the system) decides; only the applicant replies or withdraws.
"""
from __future__ import annotations

import math
import secrets
from datetime import date, datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.actors import SYSTEM, Actor
from sandbox.audit import AuditLog
from sandbox.catalog import Catalog
from sandbox.db import Base, Database, UTCDateTime
from sandbox.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyRefused
from sandbox.grants import USER_TYPES, Grants
from sandbox.policy import Openness
from sandbox.workdays import DEFAULT_CALENDAR, Calendar, load_calendar

STATES = ("submitted", "info_requested", "approved", "refused", "withdrawn")
OPEN_STATES = ("submitted", "info_requested")
_DECIDERS = ("operator", "system")
_MAX_TEXT = 4000
_MAX_DAYS = 3650

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    analyst: Mapped[str] = mapped_column(String(100), index=True)
    organisation: Mapped[str | None] = mapped_column(String(200), nullable=True)
    datasets: Mapped[list] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(Text)
    scenario: Mapped[str] = mapped_column(Text)
    epsilon: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: each policy's default
    days: Mapped[int] = mapped_column(Integer)
    user_type: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_on: Mapped[date] = mapped_column(Date)  # in the calendar's time zone
    deadline: Mapped[date | None] = mapped_column(Date, nullable=True)  # the last one while paused
    paused_days_left: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # refusal reason or approval note
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    grant_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("grants.id"), nullable=True)


class ApplicationMessage(Base):
    """The history of an application: submission, questions, replies, the decision."""

    __tablename__ = "application_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[str] = mapped_column(String(40), ForeignKey("applications.id"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    author: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))  # submitted, question, reply, approved, refused, withdrawn
    text: Mapped[str] = mapped_column(Text, default="")


def _text(value: Any, what: str, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is required", hint)
    value = value.strip()
    if len(value) > _MAX_TEXT:
        raise InvalidInput(f"{what} is at most {_MAX_TEXT} characters (got {len(value)})", "shorten it")
    return value


def _epsilon(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInput("epsilon must be a positive number", "pass --epsilon greater than 0, or leave it out "
                           "for each policy's default budget")
    return float(value)


def _days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_DAYS:
        raise InvalidInput(f"the term must be 1 to {_MAX_DAYS} days", "pass --days, e.g. 90")
    return value


class Applications:
    def __init__(self, db: Database, audit: AuditLog, catalog: Catalog, grants: Grants,
                 calendar_path: Path | None = None, *, clock: Clock | None = None) -> None:
        self.db = db
        self.audit = audit
        self.catalog = catalog
        self.grants = grants
        self.calendar_path = calendar_path
        self.clock = clock or _now

    @cached_property
    def calendar(self) -> Calendar:
        """Loaded on first use, so a broken calendar file only stops what needs it."""
        if self.calendar_path is None and not DEFAULT_CALENDAR.exists():  # pragma: no cover - odd installs
            return Calendar(source=None)
        return load_calendar(self.calendar_path)

    def today(self) -> date:
        return self.calendar.local_date(self.clock())

    # -- the analyst ------------------------------------------------------------------------

    def apply(self, actor: Actor, *, datasets: list[str], purpose: str, scenario: str, epsilon: float | None,
              days: int, user_type: str) -> dict:
        if actor.role != "analyst":
            raise Forbidden(f"only an analyst applies for access; {actor.name} acts as {actor.role}",
                            "apply as the analyst who will run the analysis")
        if not isinstance(datasets, (list, tuple)) or not datasets or not all(isinstance(d, str) for d in datasets):
            raise InvalidInput("an application names at least one dataset", "pass --dataset NAME (repeatable)")
        names = sorted(set(datasets))
        purpose = _text(purpose, "the purpose", "say what the analysis is for with --purpose")
        scenario = _text(scenario, "the scenario", "say where the results will be used with --scenario")
        eps, days = _epsilon(epsilon), _days(days)
        if user_type not in USER_TYPES:
            raise InvalidInput(f"unknown user type {user_type!r}", f"use one of: {', '.join(USER_TYPES)}")
        policies = {name: self.catalog.policy(name) for name in names}  # NotFound names the dataset
        closed = [n for n, p in policies.items() if p.openness is Openness.NOT_OPEN]
        if closed:
            raise PolicyRefused(
                f"dataset(s) {', '.join(closed)} are classed not open (不予开放): their provider does not share "
                "them with anyone, so they cannot be applied for",
                "leave them out of the application; ask the provider whether a reclassification is possible",
            )
        auto = all(p.openness is Openness.UNCONDITIONAL for p in policies.values())
        now = self.clock()
        cal = self.calendar
        submitted_on = cal.local_date(now)
        app = Application(
            id="a-" + secrets.token_hex(4), analyst=actor.name, organisation=actor.organisation, datasets=names,
            purpose=purpose, scenario=scenario, epsilon=eps, days=days, user_type=user_type,
            state="submitted", auto=False, submitted_at=now, submitted_on=submitted_on,
            deadline=cal.add(submitted_on, cal.response_working_days), late=False,
        )
        with self.db.transaction() as session:
            session.add(app)
            session.flush()
            self._message(session, app, actor, "submitted", purpose)
            self._audit(session, actor, app, "application.submitted", {
                "scenario": scenario, "epsilon": eps, "days": days, "user_type": user_type,
                "deadline": app.deadline.isoformat() if app.deadline else None,
            })
            if auto:
                self._grant(session, SYSTEM, app, eps, days, "all datasets are unconditional-open",
                            action="application.auto_approved")
                app.auto = True
            return self._view(session, app)

    def reply(self, actor: Actor, app_id: str, text: str) -> dict:
        text = _text(text, "a reply", "answer the operator's question with --text")
        with self.db.transaction() as session:
            app = self._get(session, app_id)
            self._own(actor, app, "reply to")
            self._expect(app, ("info_requested",), "reply to")
            today = self.today()
            left = max(app.paused_days_left or 0, 0)
            app.state, app.deadline, app.paused_days_left = "submitted", self.calendar.add(today, left), None
            self._message(session, app, actor, "reply", text)
            self._audit(session, actor, app, "application.replied", {
                "text": text, "deadline": app.deadline.isoformat()})
            return self._view(session, app)

    def withdraw(self, actor: Actor, app_id: str) -> dict:
        with self.db.transaction() as session:
            app = self._get(session, app_id)
            self._own(actor, app, "withdraw")
            self._expect(app, OPEN_STATES, "withdraw")
            app.state = "withdrawn"
            self._close(app, actor)
            self._message(session, app, actor, "withdrawn", "")
            self._audit(session, actor, app, "application.withdrawn", {})
            return self._view(session, app)

    # -- the operator ----------------------------------------------------------------------

    def approve(self, actor: Actor, app_id: str, *, epsilon: float | None = None, days: int | None = None,
                note: str = "") -> dict:
        """Approve and make the grant in one transaction; ``epsilon``/``days`` override the request."""
        self._decider(actor, "approve applications")
        eps = _epsilon(epsilon)
        term = _days(days) if days is not None else None
        note = (note or "").strip()
        if len(note) > _MAX_TEXT:
            raise InvalidInput(f"a note is at most {_MAX_TEXT} characters", "shorten it")
        with self.db.transaction() as session:
            app = self._get(session, app_id)
            self._expect(app, OPEN_STATES, "approve")
            self._grant(session, actor, app, eps if eps is not None else app.epsilon,
                        term if term is not None else app.days, note, action="application.approved")
            return self._view(session, app)

    def refuse(self, actor: Actor, app_id: str, reason: str) -> dict:
        self._decider(actor, "refuse applications")
        reason = _text(reason, "a reason for refusing", "say why with --reason; the analyst is told it")
        with self.db.transaction() as session:
            app = self._get(session, app_id)
            self._expect(app, OPEN_STATES, "refuse")
            app.state, app.reason = "refused", reason
            self._close(app, actor)
            self._message(session, app, actor, "refused", reason)
            self._audit(session, actor, app, "application.refused", {"reason": reason, "late": app.late})
            return self._view(session, app)

    def ask_info(self, actor: Actor, app_id: str, question: str) -> dict:
        self._decider(actor, "ask applicants for information")
        question = _text(question, "a question", "say what information is missing with --question")
        with self.db.transaction() as session:
            app = self._get(session, app_id)
            self._expect(app, ("submitted",), "ask about")
            assert app.deadline is not None
            app.paused_days_left = self._left(app.deadline, self.today())
            app.state = "info_requested"  # the stored deadline is kept but not shown while paused
            self._message(session, app, actor, "question", question)
            self._audit(session, actor, app, "application.info_requested", {
                "question": question, "working_days_left": app.paused_days_left})
            return self._view(session, app)

    # -- reading ---------------------------------------------------------------------------

    def get(self, app_id: str) -> dict:
        with self.db.transaction() as session:
            return self._view(session, self._get(session, app_id))

    def list(self, *, analyst: str | None = None, state: str | None = None,
             overdue: bool | None = None) -> list[dict]:
        """Sorted by deadline (soonest first); paused and decided ones after, by submission."""
        if state is not None and state not in STATES:
            raise InvalidInput(f"unknown state {state!r}", f"use one of: {', '.join(STATES)}")
        with self.db.transaction() as session:
            query = select(Application)
            if analyst is not None:
                query = query.where(Application.analyst == analyst)
            if state is not None:
                query = query.where(Application.state == state)
            views = [self._view(session, a, history=False) for a in session.scalars(query)]
        if overdue is not None:
            views = [v for v in views if v["overdue"] is overdue]
        views.sort(key=lambda v: (v["deadline"] is None, v["deadline"] or "", v["submitted_at"], v["id"]))
        return views

    # -- helpers ---------------------------------------------------------------------------

    def _get(self, session: Session, app_id: str) -> Application:
        app = session.get(Application, app_id, with_for_update=True) if isinstance(app_id, str) else None
        if app is None:
            raise NotFound(f"no application {app_id!r}", "see `sandbox application list`")
        return app

    @staticmethod
    def _own(actor: Actor, app: Application, what: str) -> None:
        if actor.name != app.analyst:
            raise Forbidden(f"only the applicant may {what} application {app.id}",
                            "act as the analyst who applied")

    @staticmethod
    def _decider(actor: Actor, what: str) -> None:
        if actor.role not in _DECIDERS:
            raise Forbidden(f"only an operator may {what}; {actor.name} acts as {actor.role}",
                            "ask an operator")

    @staticmethod
    def _expect(app: Application, states: tuple[str, ...], what: str) -> None:
        if app.state in states:
            return
        hints = {
            "approved": f"it is already approved (grant {app.grant_id})",
            "refused": "it was refused; the analyst may submit a new application",
            "withdrawn": "it was withdrawn; the analyst may submit a new application",
            "submitted": "it is waiting for the operator's decision",
            "info_requested": "it is waiting for the analyst's reply",
        }
        raise Conflict(f"cannot {what} application {app.id}: it is {app.state.replace('_', ' ')}",
                       hints.get(app.state, "see `sandbox application show " + app.id + "`"))

    def _left(self, deadline: date, today: date) -> int:
        """Working days left (0 on the deadline day); negative, at least -1, once it has passed."""
        if today <= deadline:
            return self.calendar.between(today, deadline)
        return -max(1, self.calendar.between(deadline, today))

    def _close(self, app: Application, actor: Actor) -> None:
        app.decided_at, app.decided_on, app.decided_by = self.clock(), self.today(), actor.name
        paused = app.paused_days_left is not None  # set only while information is requested
        app.late = not paused and app.deadline is not None and app.decided_on > app.deadline
        app.paused_days_left = None

    def _grant(self, session: Session, actor: Actor, app: Application, epsilon: float | None, days: int,
               note: str, *, action: str) -> None:
        grant = self.grants.create(
            actor, analyst=app.analyst, datasets=list(app.datasets), epsilon=epsilon, days=days,
            purpose=app.purpose, user_type=app.user_type, session=session,
        )
        app.state, app.grant_id, app.reason = "approved", grant["id"], note or None
        self._close(app, actor)
        self._message(session, app, actor, "approved", note)
        self._audit(session, actor, app, action, {
            "grant": grant["id"], "epsilon": epsilon, "days": days, "note": note, "late": app.late})

    def _message(self, session: Session, app: Application, actor: Actor, kind: str, text: str) -> None:
        session.add(ApplicationMessage(application_id=app.id, time=self.clock(), author=actor.name,
                                       role=actor.role, kind=kind, text=text))
        session.flush()

    def _audit(self, session: Session, actor: Actor, app: Application, action: str, details: dict) -> None:
        self.audit.record(
            session, actor=actor.name, role=actor.role, action=action,
            objects={"application": app.id, "analyst": app.analyst, "datasets": list(app.datasets)},
            grant_id=app.grant_id, purpose=app.purpose, details=details,
        )

    def _view(self, session: Session, app: Application, *, history: bool = True) -> dict:
        today = self.today()
        open_ = app.state in OPEN_STATES
        if app.state == "info_requested":
            left: int | None = app.paused_days_left
        elif open_ and app.deadline is not None:
            left = self._left(app.deadline, today)
        else:
            left = None
        paused = app.state == "info_requested"
        overdue = bool(app.state == "submitted" and app.deadline is not None and today > app.deadline)
        deadline = None if paused or app.deadline is None else app.deadline.isoformat()
        view: dict[str, Any] = {
            "id": app.id, "analyst": app.analyst, "organisation": app.organisation,
            "datasets": list(app.datasets), "purpose": app.purpose, "scenario": app.scenario,
            "epsilon": app.epsilon, "days": app.days, "user_type": app.user_type,
            "state": app.state, "auto_approved": bool(app.auto),
            "submitted_at": app.submitted_at.isoformat(),  # type: ignore[union-attr]
            "submitted_on": app.submitted_on.isoformat(),
            "response_working_days": self.calendar.response_working_days,
            "deadline": deadline,
            "clock": ("paused: waiting for the analyst's reply" if app.state == "info_requested"
                      else "running" if open_ else "stopped: answered"),
            "working_days_left": left,
            "overdue": overdue,
            "decided_at": app.decided_at.isoformat() if app.decided_at else None,
            "decided_by": app.decided_by,
            "answered_late": bool(app.late) if not open_ else None,
            "reason": app.reason,
            "grant_id": app.grant_id,
        }
        if deadline is not None and not self.calendar.covers(app.deadline):  # type: ignore[arg-type]
            view["calendar_note"] = (f"the holidays of {app.deadline.year} are not in the calendar "
                                     f"({self.calendar.source}); the deadline counts weekends only")
        if history:
            rows = session.scalars(select(ApplicationMessage).where(ApplicationMessage.application_id == app.id)
                                   .order_by(ApplicationMessage.id))
            view["history"] = [{"time": m.time.isoformat(), "author": m.author, "role": m.role,  # type: ignore[union-attr]
                                "kind": m.kind, "text": m.text} for m in rows]
        return view
