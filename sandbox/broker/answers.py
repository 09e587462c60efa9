"""Stored answers: the same question under the same grant is answered once and paid once.

A row is claimed as ``pending`` in the same transaction that reserves the budget, so two
identical questions asked at the same moment are charged once: the second waits for the
first's answer instead of paying again.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.db import Base, UTCDateTime


class StoredAnswer(Base):
    __tablename__ = "answers"

    grant_id: Mapped[str] = mapped_column(String(40), ForeignKey("grants.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100))
    dataset_version: Mapped[str] = mapped_column(String(64))
    query: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))  # pending | released
    answer: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    asked_by: Mapped[str] = mapped_column(String(100))
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def summary(self) -> dict:
        return {
            "digest": self.digest,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "query": self.query,
            "status": self.status,
            "epsilon": (self.answer or {}).get("epsilon"),
            "delta": (self.answer or {}).get("delta"),
            "job_id": self.job_id,
            "asked_by": self.asked_by,
            "asked_at": self.asked_at.isoformat(),
        }
