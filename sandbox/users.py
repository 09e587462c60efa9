"""Users, their roles and organisations, and their API tokens.

A token looks like ``sbx_<id>_<secret>``: ``id`` (12 hex digits) is stored in clear and is how
a token is looked up; ``secret`` is shown once, when the token is made, and only its SHA-256 is
stored, compared in constant time. Listing tokens never shows a secret.

Failed authentication is audited (``auth.failed``) with the reason, the token id when the
token could be parsed, and the source address; never the token itself. Messages tell the
caller what to do and never echo what was sent.

Who may do what here (the domain's own check; the API adds its role matrix on top):
operators (and the system) add users and make or revoke anyone's tokens; any known user may
make a token for itself and revoke its own tokens.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.actors import Actor
from sandbox.audit import AuditLog
from sandbox.db import Base, Database, UTCDateTime
from sandbox.errors import AlreadyExists, AuthFailed, Forbidden, InvalidInput, NotFound

ROLES = ("operator", "provider", "analyst", "reviewer")
TOKEN_PREFIX = "sbx"
MAX_TOKEN_DAYS = 3650
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_TOKEN = re.compile(r"^sbx_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")
_ADMINS = ("operator", "system")

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    m = moment
    return m.isoformat() if m else None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    organisation: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "role": self.role, "organisation": self.organisation,
            "created_by": self.created_by, "created_at": _iso(self.created_at),
        }

    def actor(self) -> Actor:
        return Actor(self.name, self.role, self.organisation)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    user: Mapped[str] = mapped_column(String(100), ForeignKey("users.name"), index=True)
    label: Mapped[str] = mapped_column(Text, default="")
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= now:  # type: ignore[operator]
            return "expired"
        return "active"

    def to_dict(self, now: datetime) -> dict:
        return {
            "id": self.id, "user": self.user, "label": self.label,
            "shown_as": f"{TOKEN_PREFIX}_{self.id}_…",
            "created_by": self.created_by, "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at), "revoked_at": _iso(self.revoked_at),
            "revoked_by": self.revoked_by, "status": self.status(now),
        }


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


class Users:
    def __init__(self, db: Database, audit: AuditLog, *, clock: Clock | None = None) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock or _now

    # -- users -----------------------------------------------------------------------------

    def add(self, actor: Actor, name: str, role: str, organisation: str | None = None) -> dict:
        _require_admin(actor, "add users")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(
                "a user name must be 1-100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
                "choose a name like li.wei or bank-analyst-1",
            )
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}", f"use one of: {', '.join(ROLES)}")
        if organisation is not None:
            organisation = organisation.strip() or None
            if organisation and len(organisation) > 200:
                raise InvalidInput("an organisation name is at most 200 characters", "shorten it")
        with self.db.transaction() as session:
            if session.get(User, name) is not None:
                raise AlreadyExists(f"a user named {name} already exists", "choose another name, or use that user")
            user = User(name=name, role=role, organisation=organisation, created_by=actor.name,
                        created_at=self.clock())
            session.add(user)
            session.flush()
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="user.added",
                objects={"user": name}, details={"role": role, "organisation": organisation},
            )
            return user.to_dict()

    def get(self, name: str) -> dict:
        with self.db.transaction() as session:
            return _user(session, name).to_dict()

    def list(self) -> list[dict]:
        with self.db.transaction() as session:
            return [u.to_dict() for u in session.scalars(select(User).order_by(User.name))]

    # -- tokens ----------------------------------------------------------------------------

    def create_token(self, actor: Actor, user: str, days: int = 90, label: str = "") -> tuple[str, dict]:
        """A new token for ``user``: (the token, shown this once; its description)."""
        if actor.role not in _ADMINS and actor.name != user:
            raise Forbidden(f"{actor.role} {actor.name} may not make tokens for another user",
                            "ask an operator, or make a token for yourself")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"a token's term must be 1 to {MAX_TOKEN_DAYS} days", "pass --days, e.g. 90")
        label = (label or "").strip()
        if len(label) > 200:
            raise InvalidInput("a token label is at most 200 characters", "shorten it")
        secret = secrets.token_urlsafe(32)  # 43 characters, 256 bits
        now = self.clock()
        with self.db.transaction() as session:
            owner = _user(session, user)
            token_id = secrets.token_hex(6)
            while session.get(ApiToken, token_id) is not None:  # pragma: no cover - 2**48 ids
                token_id = secrets.token_hex(6)
            row = ApiToken(
                id=token_id, user=owner.name, label=label, secret_sha256=_digest(secret),
                created_by=actor.name, created_at=now, expires_at=now + timedelta(days=days),
            )
            session.add(row)
            session.flush()
            self.audit.record(
                session, actor=actor.name, role=actor.role, action="token.created",
                objects={"token": token_id, "user": owner.name},
                details={"days": days, "expires_at": _iso(row.expires_at), "label": label},
            )
            return f"{TOKEN_PREFIX}_{token_id}_{secret}", row.to_dict(now)

    def revoke_token(self, actor: Actor, token_id: str) -> dict:
        if not isinstance(token_id, str) or not _TOKEN_ID.match(token_id):
            raise InvalidInput("a token id is 12 hex digits (the part after sbx_)",
                               "see `sandbox token list` for the ids")
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get(ApiToken, token_id)
            if row is None:
                raise NotFound(f"no token {token_id}", "see `sandbox token list` for the ids")
            if actor.role not in _ADMINS and actor.name != row.user:
                raise Forbidden(f"{actor.role} {actor.name} may not revoke another user's token",
                                "ask an operator")
            if row.revoked_at is None:
                row.revoked_at, row.revoked_by = now, actor.name
                self.audit.record(
                    session, actor=actor.name, role=actor.role, action="token.revoked",
                    objects={"token": token_id, "user": row.user},
                )
            return row.to_dict(now)

    def tokens(self, user: str | None = None) -> list[dict]:
        now = self.clock()
        with self.db.transaction() as session:
            query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
            if user is not None:
                _user(session, user)
                query = query.where(ApiToken.user == user)
            return [t.to_dict(now) for t in session.scalars(query)]

    # -- authentication ----------------------------------------------------------------------

    def authenticate(self, token: str | None, *, source: str = "") -> Actor:
        """The actor a token stands for, or ``AuthFailed`` (audited as ``auth.failed``)."""
        if token is None or not isinstance(token, str) or not token.strip():
            self._fail("missing", None, None, source,
                       "no API token was given",
                       "send your token as 'Authorization: Bearer sbx_…'; an operator makes one with "
                       "`sandbox token create USER`")
        parsed = parse_token(token)
        if parsed is None:
            self._fail("malformed", None, None, source,
                       "the API token is malformed",
                       "a token looks like sbx_<12 hex digits>_<43 characters>; copy it whole, "
                       "or ask an operator for a new one")
        token_id, secret = parsed  # type: ignore[misc]
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get(ApiToken, token_id)
            stored = row.secret_sha256 if row is not None else _digest("")
            matches = hmac.compare_digest(_digest(secret), stored)
            if row is None or not matches:
                user = None if row is None else row.user
                reason = "unknown" if row is None else "wrong_secret"
                found: tuple | None = (reason, user)
            else:
                found = None
                status = row.status(now)
                owner = session.get(User, row.user)
                actor = owner.actor() if owner is not None else None
                revoked_at, expires_at, user = row.revoked_at, row.expires_at, row.user
        if found is not None:
            self._fail(found[0], token_id, found[1], source,
                       "the API token is not recognised",
                       "check that you copied it whole; if it was lost, ask an operator for a new one")
        if status == "revoked":
            self._fail("revoked", token_id, user, source,
                       f"the API token {token_id} was revoked on {revoked_at.date()}",  # type: ignore[union-attr]
                       "ask an operator for a new token")
        if status == "expired":
            self._fail("expired", token_id, user, source,
                       f"the API token {token_id} expired on {expires_at.date()}",  # type: ignore[union-attr]
                       "ask an operator for a new token (`sandbox token create USER --days N`)")
        if actor is None:  # pragma: no cover - the foreign key keeps tokens tied to users
            self._fail("unknown_user", token_id, user, source, "the API token belongs to no user",
                       "ask an operator for a new token")
        return actor  # type: ignore[return-value]

    def _fail(self, reason: str, token_id: str | None, user: str | None, source: str,
              message: str, hint: str) -> None:
        objects: dict = {}
        if token_id:
            objects["token"] = token_id
        if user:
            objects["user"] = user
        self.audit.append(
            actor="anonymous", role="public", action="auth.failed", outcome=AuthFailed.code,
            objects=objects, details={"reason": reason, "source": str(source or "")[:100]},
        )
        raise AuthFailed(message, hint)


def _user(session: Session, name: str) -> User:
    user = session.get(User, name) if isinstance(name, str) else None
    if user is None:
        raise NotFound(f"no user named {name!r}", "see `sandbox user list`, or add one with `sandbox user add`")
    return user


def _require_admin(actor: Actor, what: str) -> None:
    if actor.role not in _ADMINS:
        raise Forbidden(f"only an operator may {what}; {actor.name} acts as {actor.role}",
                        "ask an operator to do it")
