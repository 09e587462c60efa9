"""The broker's front door: validate, reserve budget, answer with OpenDP, audit.

Order matters and is the safety argument: a question is validated against the public
schema, the policy and the grant before any data is touched (so a refusal never depends on
the data); the budget is reserved and the reservation audited in one transaction before
anything is computed (so a crash can lose an answer, never a charge); the answer is stored
and audited once released, and the same question under the same grant is answered from the
store, free.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sandbox import grants, ledger
from sandbox.actors import Actor
from sandbox.audit import AuditLog
from sandbox.audit.canonical import canonical_json
from sandbox.broker.answers import StoredAnswer
from sandbox.broker.engine import Engine
from sandbox.broker.query import Query, Scope, cost, parse_query
from sandbox.catalog import Catalog
from sandbox.db import Database
from sandbox.policy import Policy
from sandbox.pricing import Pricing
from sandbox.errors import QueryInvalid, SandboxError

log = logging.getLogger(__name__)

MOCK_ROWS = 10_000
PENDING_WAIT_S = 60.0
#: A question pending longer than this lost its asker (a crashed process); another may take it over.
PENDING_STALE_S = 300.0
DEFAULT_HINT = "fix the query and ask again; docs/queries.md lists every field and rule"
MAX_AUDITED_QUERY = 64 * 1024  # characters of a refused document kept verbatim in the audit log


class BrokerFailed(SandboxError):
    code = "internal"


def _dataset_of(doc: Any) -> str:
    if not isinstance(doc, dict) or not isinstance(doc.get("dataset"), str):
        raise QueryInvalid("a query is a JSON object with a string field `dataset`", "see docs/queries.md")
    return doc["dataset"]


def _scope(grant: grants.Grant, dataset: str) -> Scope:
    columns = grant.columns.get(dataset)
    return Scope(
        columns=frozenset(columns) if columns else None,
        operations=frozenset(grant.operations) if grant.operations else None,
    )


class Broker:
    def __init__(self, db: Database, catalog: Catalog, audit: AuditLog, pricing: Pricing,
                 engine: Engine | None = None, pending_stale_s: float = PENDING_STALE_S) -> None:
        self.db = db
        self.catalog = catalog
        self.audit = audit
        self.pricing = pricing
        self.engine = engine or Engine()
        self.pending_stale_s = pending_stale_s

    # -- questions that spend -------------------------------------------------------------

    def ask(self, actor: Actor, grant_id: str, doc: Any, job_id: str | None = None) -> dict:
        """A DP answer to ``doc`` under ``grant_id``, charged to its budget (or a clear refusal)."""
        query, version = self._validate(actor, grant_id, doc, job_id)
        digest = query.digest()
        deadline = time.monotonic() + PENDING_WAIT_S
        while True:
            try:
                claimed = self._claim(actor, grant_id, query, version, digest, job_id)
            except SandboxError as err:
                self._refused(actor, grant_id, doc, err, job_id)
                raise
            except IntegrityError:
                # Another asker claimed the same question first (possible where transactions
                # do not serialise, e.g. PostgreSQL): our reservation rolled back with it; wait.
                claimed = False
            if isinstance(claimed, dict):
                return claimed
            if claimed:
                break
            if time.monotonic() > deadline:
                raise BrokerFailed(
                    "the same question is still being answered for this grant",
                    "wait a moment and ask again; it will not be charged twice",
                )
            time.sleep(0.05)
        return self._release(actor, grant_id, query, version, digest, job_id)

    def _validate(self, actor: Actor, grant_id: str, doc: Any, job_id: str | None) -> tuple[Query, str]:
        try:
            dataset = _dataset_of(doc)
            with self.db.transaction() as session:
                grant = grants.active(session, grant_id, dataset)
                entry = self.catalog.get(dataset, session)
                policy = self.catalog.policy(dataset, session)
                query = parse_query(doc, policy, _scope(grant, dataset))
                return query, entry.version
        except SandboxError as err:
            self._refused(actor, grant_id, doc, err, job_id)
            raise

    def _claim(
        self, actor: Actor, grant_id: str, query: Query, version: str, digest: str, job_id: str | None
    ) -> dict | bool:
        """Reserve the budget and claim the question; or return its stored answer; or False to wait."""
        epsilon, delta = cost(query)
        with self.db.transaction() as session:
            grant = grants.active(session, grant_id, query.dataset)
            stored = session.get(StoredAnswer, (grant_id, digest))
            if stored is not None and stored.status == "released" and stored.dataset_version == version:
                self.audit.record(
                    session, actor=actor.name, role=actor.role, action="query.cached",
                    objects={"dataset": query.dataset, "query": digest, "job": job_id},
                    dataset_version=version, grant_id=grant_id, details={"epsilon": 0.0},
                )
                left = ledger.budget(session, grant_id, query.dataset)
                return {**stored.answer, "cached": True, "epsilon_charged": 0.0, "budget_left": _left(left)}  # type: ignore[dict-item]
            if stored is not None and stored.status == "pending":
                if _age_s(stored.asked_at) < self.pending_stale_s:
                    return False
                # Its asker died between reserving and releasing (its charge stays spent):
                # take the question over rather than let it wait forever.
                self.audit.record(
                    session, actor=actor.name, role=actor.role, action="query.abandoned", outcome="error",
                    objects={"dataset": query.dataset, "query": digest, "job": stored.job_id},
                    dataset_version=stored.dataset_version, grant_id=grant_id,
                    details={"asked_by": stored.asked_by, "asked_at": stored.asked_at.isoformat()},
                )
                session.delete(stored)
                session.flush()
                stored = None
            if stored is not None:  # an answer about an older version of the dataset
                session.delete(stored)
                session.flush()
            left = ledger.reserve(session, grant_id, query.dataset, epsilon, delta, digest, job_id)
            self.pricing.charge_query(session, grant, query.dataset, epsilon, query_digest=digest, job_id=job_id)
            session.add(
                StoredAnswer(
                    grant_id=grant_id, digest=digest, dataset=query.dataset, dataset_version=version,
                    query=query.canonical(), status="pending", asked_by=actor.name, job_id=job_id,
                    asked_at=datetime.now(timezone.utc),
                )
            )
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="query.charged",
                objects={"dataset": query.dataset, "query": digest, "job": job_id},
                dataset_version=version, grant_id=grant_id,
                details={"query": query.canonical(), "epsilon": epsilon, "delta": delta,
                         "epsilon_left": left.epsilon_left},
            )
            return True

    def _release(
        self, actor: Actor, grant_id: str, query: Query, version: str, digest: str, job_id: str | None
    ) -> dict:
        try:
            answer = self.engine.answer(
                self.catalog.policy(query.dataset), version,
                lambda: self.catalog.load(query.dataset, version), query,
            ).to_dict()
        except Exception as exc:  # the charge stays: whether it failed may depend on the data
            log.exception("broker failed on %s for grant %s", digest, grant_id)
            with self.db.transaction() as session:
                stored = session.get(StoredAnswer, (grant_id, digest))
                if stored is not None:
                    session.delete(stored)
                self.audit.record(
                    session, actor=actor.name, role=actor.role, action="query.failed", outcome="error",
                    objects={"dataset": query.dataset, "query": digest, "job": job_id},
                    dataset_version=version, grant_id=grant_id, details={"error": type(exc).__name__},
                )
            raise BrokerFailed(
                "the broker failed to answer this query; the budget it reserved stays spent",
                "the operator has the details in the broker log; try a simpler query",
            ) from None
        with self.db.transaction() as session:
            stored = session.get(StoredAnswer, (grant_id, digest))
            if stored is None:  # taken over and failed meanwhile: this answer is paid for, keep it
                stored = StoredAnswer(
                    grant_id=grant_id, digest=digest, dataset=query.dataset, dataset_version=version,
                    query=query.canonical(), asked_by=actor.name, job_id=job_id,
                    asked_at=datetime.now(timezone.utc),
                )
                session.add(stored)
            stored.status, stored.answer = "released", answer
            stored.released_at = datetime.now(timezone.utc)
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="query.released",
                objects={"dataset": query.dataset, "query": digest, "job": job_id},
                dataset_version=version, grant_id=grant_id,
                details={"epsilon": answer["epsilon"], "delta": answer["delta"],
                         "suppressed_groups": answer.get("suppressed_groups", 0)},
            )
            left = ledger.budget(session, grant_id, query.dataset)
        return {**answer, "cached": False, "epsilon_charged": answer["epsilon"], "budget_left": _left(left)}

    def _refused(self, actor: Actor, grant_id: str | None, doc: Any, err: SandboxError, job_id: str | None) -> None:
        if not err.hint:  # every refusal says what to do, even where the validator gave no hint
            err.hint = DEFAULT_HINT
        self.audit.append(
            actor=actor.name, role=actor.role, action="query.refused", outcome=err.code,
            objects={"dataset": doc.get("dataset") if isinstance(doc, dict) else None, "job": job_id},
            grant_id=grant_id, details={"query": _auditable(doc), "reason": err.message},
        )

    # -- questions that do not spend ------------------------------------------------------

    def preview(self, actor: Actor, grant_id: str, doc: Any) -> dict:
        """What a query would cost, and whether it would be free because it was asked before."""
        query, version = self._validate(actor, grant_id, doc, None)
        epsilon, delta = cost(query)
        with self.db.transaction() as session:
            stored = session.get(StoredAnswer, (grant_id, query.digest()))
            cached = stored is not None and stored.status == "released" and stored.dataset_version == version
            left = ledger.budget(session, grant_id, query.dataset)
        return {
            "dataset": query.dataset,
            "epsilon": 0.0 if cached else epsilon,
            "delta": 0.0 if cached else delta,
            "cached": cached,
            "budget_left": _left(left),
            "accuracy": self.engine.accuracy(self.catalog.policy(query.dataset), query),
        }

    def history(self, grant_id: str) -> list[dict]:
        with self.db.transaction() as session:
            rows = session.scalars(
                select(StoredAnswer).where(StoredAnswer.grant_id == grant_id).order_by(StoredAnswer.asked_at)
            )
            return [r.summary() for r in rows]

    def preview_mock(self, doc: Any) -> dict:
        """What a query would cost under a grant (from the policy alone); a mock run spends nothing."""
        policy, query = self._parse_public(doc)
        epsilon, delta = cost(query)
        return {"dataset": query.dataset, "epsilon": epsilon, "delta": delta, "cached": False,
                "budget_left": None, "mock": True, "accuracy": self.engine.accuracy(policy, query)}

    def ask_mock(self, doc: Any) -> dict:
        """The same engine over mock rows made from the public schema: no grant, no budget."""
        policy, query = self._parse_public(doc)
        dataset = query.dataset
        answer = self.engine.answer(
            policy, "mock", lambda: self.catalog.mock(dataset, rows=MOCK_ROWS), query, mock=True
        ).to_dict()
        return {**answer, "cached": False, "epsilon_charged": 0.0, "budget_left": None}

    def _parse_public(self, doc: Any) -> tuple[Policy, Query]:
        """A query checked against the public schema and policy only (mock runs have no grant)."""
        policy = self.catalog.policy(_dataset_of(doc))
        return policy, parse_query(doc, policy, None)


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON: non-finite numbers and foreign types become short markers."""
    if depth > 32:
        return "<nested too deep>"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return f"<{type(value).__name__}>"


def _auditable(doc: Any) -> Any:
    """A refused document as the audit log can hold it: never a reason for the refusal to go unrecorded."""
    if not isinstance(doc, (dict, list)):
        return None
    plain = _plain(doc)
    text = canonical_json(plain)
    if len(text) > MAX_AUDITED_QUERY:
        return {"too_large": len(text), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    return plain


def _age_s(moment: datetime) -> float:
    return (datetime.now(timezone.utc) - moment).total_seconds()


def _left(view: ledger.BudgetView) -> dict[str, float]:
    return {"epsilon": view.epsilon_left, "delta": view.delta_left}
