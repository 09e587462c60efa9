"""The job queue in the database: submit, claim, heartbeat, cancel, finish, recover.

Every change of state is one transaction together with its audit entry, so a job is either
fully queued or not at all, and a worker killed mid-job leaves a row that ``recover`` can
find (by its stale heartbeat, or because its worker is known to be dead) and close
consistently: failed, nothing released, its charges kept and listed from the ledger.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from sandbox import grants, ledger
from sandbox.actors import Actor
from sandbox.audit import AuditLog
from sandbox.catalog import Catalog
from sandbox.db import Database
from sandbox.errors import InvalidInput, NotFound
from sandbox.jobs.models import Job
from sandbox.pricing import Pricing
from sandbox.runtime_policy import RuntimePolicy
from sandbox.sdk.guard import check_script

STALE_AFTER = timedelta(seconds=30)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Jobs:
    def __init__(self, db: Database, audit: AuditLog, catalog: Catalog, pricing: Pricing,
                 runtime: RuntimePolicy) -> None:
        self.db = db
        self.audit = audit
        self.catalog = catalog
        self.pricing = pricing
        self.runtime = runtime

    def submit(
        self,
        actor: Actor,
        script_name: str,
        source: str,
        *,
        grant_id: str | None = None,
        mock_datasets: list[str] | None = None,
    ) -> dict:
        """Check the script under the policy and queue it; a refused script is kept, marked refused."""
        mock = grant_id is None
        limit = self.runtime.max_script_bytes
        if len(source.encode("utf-8")) > limit:
            raise InvalidInput(
                f"the script is larger than {limit // 1024} KiB",
                "split the analysis into smaller scripts",
            )
        with self.db.transaction() as session:
            if mock:
                datasets = mock_datasets or self.catalog.names()
                for name in datasets:
                    self.catalog.policy(name)  # NotFound names the dataset
                owner = actor.name
            else:
                grant = grants.active(session, grant_id)  # type: ignore[arg-type]
                datasets, owner = grant.datasets, grant.analyst
            violations = [v.to_dict() for v in check_script(source, self.runtime.allowed_imports)]
            job = Job(
                id="j-" + secrets.token_hex(5),
                owner=owner,
                grant_id=grant_id,
                mock=mock,
                datasets=datasets,
                state="refused" if violations else "queued",
                script_name=script_name,
                script=source,
                script_sha256=hashlib.sha256(source.encode("utf-8")).hexdigest(),
                submitted_at=_now(),
                violations=violations,
                reason="the script check refused the script" if violations else None,
                outputs=[], resources={}, queries=[],
            )
            session.add(job)
            self._audit(session, actor, job, "job.refused" if violations else "job.submitted",
                        outcome="refused" if violations else "ok",
                        details={"script_sha256": job.script_sha256, "mock": mock,
                                 "violations": violations})
            return job.to_dict()

    def get(self, job_id: str) -> Job:
        with self.db.transaction() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"no job {job_id}", "list your jobs with `sandbox job list`")
            session.expunge(job)
            return job

    def list(self, owner: str | None = None, limit: int = 50) -> list[dict]:
        with self.db.transaction() as session:
            query = select(Job).order_by(Job.submitted_at.desc()).limit(limit)
            if owner:
                query = query.where(Job.owner == owner)
            return [j.to_dict() for j in session.scalars(query)]

    def claim(self, worker: str, job_id: str | None = None) -> Job | None:
        """Take the oldest queued job (or ``job_id``), atomically: two workers never take one job."""
        with self.db.transaction() as session:
            query = select(Job.id).where(Job.state == "queued").order_by(Job.submitted_at).limit(1)
            if job_id:
                query = select(Job.id).where(Job.id == job_id, Job.state == "queued")
            found = session.scalar(query)
            if found is None:
                return None
            now = _now()
            taken = session.execute(
                update(Job).where(Job.id == found, Job.state == "queued")
                .values(state="running", worker=worker, started_at=now, heartbeat_at=now)
            ).rowcount
            if taken != 1:
                return None
            job = session.get(Job, found)
            assert job is not None
            self._audit(session, Actor(worker, "system"), job, "job.started", details={"worker": worker})
            session.flush()
            session.expunge(job)
            return job

    def heartbeat(self, job_id: str) -> Job:
        """Mark the job alive and return it, so the worker sees cancellation requests."""
        with self.db.transaction() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.heartbeat_at = _now()
            session.flush()
            session.expunge(job)
            return job

    def started(self, job_id: str, *, runner: str, isolation: str, image_digest: str | None) -> None:
        with self.db.transaction() as session:
            session.execute(
                update(Job).where(Job.id == job_id)
                .values(runner=runner, isolation=isolation, image_digest=image_digest)
            )

    def cancel(self, actor: Actor, job_id: str) -> dict:
        with self.db.transaction() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"no job {job_id}", "list your jobs with `sandbox job list`")
            if job.final:
                raise InvalidInput(f"job {job_id} has already ended ({job.state})", "nothing to cancel")
            if job.state == "queued":
                job.state, job.finished_at, job.reason = "cancelled", _now(), f"cancelled by {actor.name}"
            else:
                job.cancel_requested = True
                job.reason = f"cancelled by {actor.name} while running"
            self._audit(session, actor, job, "job.cancel_requested")
            return job.to_dict()

    def finish(
        self, job_id: str, state: str, *, reason: str | None = None, exit_code: int | None = None,
        stdout: str = "", stderr: str = "", outputs: list | None = None, resources: dict | None = None,
        queries: list | None = None,
    ) -> dict:
        """Record the end of a job once; a second call (a retried finalize) changes nothing."""
        with self.db.transaction() as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.final:
                return job.to_dict()
            job.state, job.reason, job.exit_code = state, reason, exit_code
            job.stdout, job.stderr = stdout, stderr
            job.outputs, job.resources, job.queries = outputs or [], resources or {}, queries or []
            job.finished_at = _now()
            if job.grant_id and not job.mock:
                self.pricing.charge_compute(session, job.grant_id,
                                            float(job.resources.get("duration_s", 0.0)), job_id=job.id)
            self._audit(
                session, Actor(job.worker or "worker", "system"), job, "job.finished",
                outcome=state,
                details={"reason": reason, "exit_code": exit_code, "image_digest": job.image_digest,
                         "script_sha256": job.script_sha256, "outputs": job.outputs,
                         "resources": job.resources,
                         "epsilon": sum(q.get("epsilon", 0.0) for q in job.queries)},
            )
            return job.to_dict()

    def running_ids(self) -> list[str]:
        with self.db.transaction() as session:
            return list(session.scalars(select(Job.id).where(Job.state == "running")))

    def recover(self, stale_after: timedelta = STALE_AFTER,
                worker_dead: Callable[[str], bool] | None = None) -> list[str]:
        """Close jobs whose worker stopped mid-job: failed, nothing released, charges kept.

        A running job is closed if its heartbeat is older than ``stale_after``, or at once if
        ``worker_dead(job.worker)`` says its worker is gone (see ``Worker.recover``). The
        queries it was charged for are read back from the ledger into the job record.
        """
        cutoff = _now() - stale_after
        with self.db.transaction() as session:
            running = list(session.scalars(select(Job).where(Job.state == "running")))
            stale = [
                (j.id, j.worker) for j in running
                if j.heartbeat_at is None or j.heartbeat_at < cutoff
                or (worker_dead is not None and j.worker is not None and worker_dead(j.worker))
            ]
        closed = []
        for job_id, worker in stale:
            self.finish(job_id, "failed",
                        reason=f"the worker ({worker}) stopped while the job ran; no output was released "
                               "(budget already spent by its queries stays spent)",
                        queries=self.charged_queries(job_id))
            closed.append(job_id)
        return closed

    def charged_queries(self, job_id: str) -> list[dict]:
        """The job's charges as the ledger holds them (what a dead worker could not record)."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(ledger.Charge).where(ledger.Charge.job_id == job_id).order_by(ledger.Charge.id))
            return [{"dataset": r.dataset, "digest": r.query_digest,
                     "epsilon": r.epsilon / ledger.EPSILON_UNIT, "cached": False, "from_ledger": True}
                    for r in rows]

    def _audit(self, session, actor: Actor, job: Job, action: str, outcome: str = "ok",  # type: ignore[no-untyped-def]
               details: dict | None = None) -> None:
        self.audit.record(
            session, actor=actor.name, role=actor.role, action=action, outcome=outcome,
            objects={"job": job.id, "datasets": job.datasets, "mock": job.mock},
            grant_id=job.grant_id, details=details,
        )
