"""The job record: everything a reviewer needs to know about one execution."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.db import Base, UTCDateTime

#: A job's life: queued -> running -> succeeded | failed | cancelled; refused never runs.
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "refused")
FINAL = frozenset({"succeeded", "failed", "cancelled", "refused"})


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat()


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    grant_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    mock: Mapped[bool] = mapped_column(Boolean, default=False)
    datasets: Mapped[list] = mapped_column(JSON)  # mock jobs: the datasets the mock broker serves
    state: Mapped[str] = mapped_column(String(12), index=True)
    script_name: Mapped[str] = mapped_column(String(200))
    script: Mapped[str] = mapped_column(Text)
    script_sha256: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    runner: Mapped[str | None] = mapped_column(String(20), nullable=True)
    isolation: Mapped[str | None] = mapped_column(String(10), nullable=True)
    image_digest: Mapped[str | None] = mapped_column(String(100), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    outputs: Mapped[list] = mapped_column(JSON, default=list)  # [{name, size, sha256}]
    resources: Mapped[dict] = mapped_column(JSON, default=dict)  # duration, limits, truncation
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why refused / failed / cancelled
    violations: Mapped[list] = mapped_column(JSON, default=list)  # the script check's refusals
    queries: Mapped[list] = mapped_column(JSON, default=list)  # [{dataset, digest, epsilon, cached}]

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_dict(self, *, with_script: bool = False) -> dict:
        data = {
            "id": self.id,
            "owner": self.owner,
            "grant_id": self.grant_id,
            "mock": self.mock,
            "datasets": self.datasets,
            "state": self.state,
            "script_name": self.script_name,
            "script_sha256": self.script_sha256,
            "submitted_at": _utc(self.submitted_at),
            "started_at": _utc(self.started_at),
            "finished_at": _utc(self.finished_at),
            "runner": self.runner,
            "isolation": self.isolation,
            "image_digest": self.image_digest,
            "exit_code": self.exit_code,
            "outputs": self.outputs,
            "resources": self.resources,
            "reason": self.reason,
            "violations": self.violations,
            "queries": self.queries,
            "epsilon_spent": sum(q.get("epsilon", 0.0) for q in self.queries),
        }
        if with_script:
            data["script"] = self.script
        return data
