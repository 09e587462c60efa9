"""Users and API tokens against a real home: hashed at rest, expiry, revocation, audited failures."""
from __future__ import annotations

import hashlib

import pytest

from sandbox.actors import Actor
from sandbox.errors import AlreadyExists, AuthFailed, Forbidden, InvalidInput, NotFound
from tests.governance.conftest import ANALYST, OPERATOR, OTHER


def _failures(gov) -> list[dict]:
    return [{"objects": e.objects, **e.details} for e in gov.entries("auth.failed")]


def test_add_list_get_and_audit(gov):
    assert gov.users.get("ana") == {**gov.users.get("ana"), "role": "analyst", "organisation": "Rural Bank"}
    assert [u["name"] for u in gov.users.list()] == ["ana", "bob", "bureau", "rev"]
    assert len(gov.entries("user.added")) == 4
    with pytest.raises(AlreadyExists):
        gov.users.add(OPERATOR, "ana", "analyst")
    with pytest.raises(InvalidInput, match="unknown role"):
        gov.users.add(OPERATOR, "eve", "admin")
    with pytest.raises(InvalidInput, match="user name"):
        gov.users.add(OPERATOR, "../eve", "analyst")
    with pytest.raises(Forbidden):
        gov.users.add(ANALYST, "eve", "operator")
    with pytest.raises(NotFound):
        gov.users.get("nobody")


def test_token_roundtrip_and_hashed_at_rest(gov):
    token, info = gov.users.create_token(OPERATOR, "ana", days=30, label="laptop")
    assert token.startswith(f"sbx_{info['id']}_")
    assert gov.users.authenticate(token, source="10.0.0.1") == Actor("ana", "analyst", "Rural Bank")
    secret = token.split("_", 2)[2]
    gov.services.db.engine.dispose()
    raw = b"".join(p.read_bytes() for p in (gov.root / "home").glob("sandbox.db*"))
    assert secret.encode() not in raw and token.encode() not in raw
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in raw  # only the digest is stored
    listed = gov.users.tokens("ana")
    assert [t["id"] for t in listed] == [info["id"]]
    assert secret not in repr(listed) and "secret_sha256" not in listed[0]
    created = gov.entries("token.created")[-1]
    assert created.objects == {"token": info["id"], "user": "ana"} and secret not in repr(created.details)


def test_expiry(gov):
    token, info = gov.users.create_token(OPERATOR, "ana", days=1)
    gov.clock.advance(hours=23)
    assert gov.users.authenticate(token).name == "ana"
    gov.clock.advance(hours=2)
    with pytest.raises(AuthFailed, match="expired") as e:
        gov.users.authenticate(token, source="10.0.0.2")
    assert e.value.code == "unauthorized" and token not in str(e.value)
    assert _failures(gov)[-1] == {"objects": {"token": info["id"], "user": "ana"}, "reason": "expired",
                                  "source": "10.0.0.2"}
    assert gov.users.tokens("ana")[0]["status"] == "expired"


def test_revocation(gov):
    token, info = gov.users.create_token(OPERATOR, "ana")
    with pytest.raises(Forbidden):
        gov.users.revoke_token(OTHER, info["id"])
    gov.users.revoke_token(ANALYST, info["id"])  # one's own token
    with pytest.raises(AuthFailed, match="revoked"):
        gov.users.authenticate(token, source="10.0.0.3")
    assert _failures(gov)[-1]["reason"] == "revoked"
    assert [e.objects["token"] for e in gov.entries("token.revoked")] == [info["id"]]
    gov.users.revoke_token(OPERATOR, info["id"])  # idempotent, audited once
    assert len(gov.entries("token.revoked")) == 1
    with pytest.raises(NotFound):
        gov.users.revoke_token(OPERATOR, "0" * 12)
    with pytest.raises(InvalidInput):
        gov.users.revoke_token(OPERATOR, "x; drop")


@pytest.mark.parametrize("bad, reason", [
    (None, "missing"), ("", "missing"), ("   ", "missing"),
    ("Bearer something", "malformed"), ("sbx_zz_short", "malformed"), ("sbx_" + "a" * 200, "malformed"),
    ("sbx_0123456789ab_" + "A" * 43, "unknown"),
])
def test_each_failure_is_audited_without_the_token(gov, bad, reason):
    with pytest.raises(AuthFailed) as e:
        gov.users.authenticate(bad, source="192.0.2.7")
    assert bad is None or not bad.strip() or bad not in str(e.value)
    assert e.value.hint  # says what to do
    last = _failures(gov)[-1]
    assert last["reason"] == reason and last["source"] == "192.0.2.7"
    entry = gov.entries("auth.failed")[-1]
    assert entry.outcome == "unauthorized" and entry.actor == "anonymous"
    if bad and bad.strip():
        assert bad not in repr(entry.objects) + repr(entry.details)


def test_wrong_secret_of_a_known_token(gov):
    token, info = gov.users.create_token(OPERATOR, "ana")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(AuthFailed, match="not recognised"):
        gov.users.authenticate(forged)
    assert _failures(gov)[-1] == {"objects": {"token": info["id"], "user": "ana"}, "reason": "wrong_secret",
                                  "source": ""}


def test_who_may_make_tokens(gov):
    gov.users.create_token(ANALYST, "ana")  # for oneself
    with pytest.raises(Forbidden):
        gov.users.create_token(ANALYST, "bob")
    with pytest.raises(NotFound):
        gov.users.create_token(OPERATOR, "nobody")
    for days in (0, -1, 3651, True):
        with pytest.raises(InvalidInput):
            gov.users.create_token(OPERATOR, "ana", days=days)
