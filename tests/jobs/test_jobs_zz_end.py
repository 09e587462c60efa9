"""Run last (file order): after every job of the session, the log verifies and no canary leaked."""
from __future__ import annotations

import pytest

from .conftest import CANARY, Env

pytestmark = pytest.mark.docker


def test_the_canary_check_can_see_a_leak(env: Env) -> None:
    env.texts.append(f"oops {CANARY}")
    try:
        with pytest.raises(AssertionError, match="cli"):
            env.assert_no_canary()
    finally:
        env.texts.pop()
    places = {where.split()[0] for where, _ in env.everything()}
    assert {"job", "audit", "table"} <= places  # jobs, the audit log and every table were read


def test_audit_verifies_after_everything(env: Env) -> None:
    env.services.audit.checkpoint()
    done = env.cli("audit", "verify")
    assert "audit verify: OK" in done.stdout
    actions = {e["action"] for e in env.services.audit.entries()}
    assert {"job.submitted", "job.started", "job.finished", "job.refused", "job.cancel_requested",
            "query.charged", "query.released", "query.refused", "grant.revoked"} <= actions
