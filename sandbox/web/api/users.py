"""Users and API tokens (operators), and ``/me`` for anyone with a token."""
from __future__ import annotations

from apiflask import APIBlueprint

from sandbox.web.auth import ANY_USER, actor, requires, services
from sandbox.web.schemas import TokenCreate, TokenListArgs, UserAdd, body, query

bp = APIBlueprint("users", __name__, tag="users")


@bp.get("/me")
@requires(*ANY_USER)
def me():  # type: ignore[no-untyped-def]
    """Who the token stands for: name, role, organisation."""
    who = actor()
    return {"name": who.name, "role": who.role, "organisation": who.organisation}


@bp.get("/users")
@requires("operator")
def list_users():  # type: ignore[no-untyped-def]
    """Every user with role and organisation."""
    return services().users.list()


@bp.post("/users")
@requires("operator", status=201)
@body(bp, UserAdd)
def add_user(data: dict):  # type: ignore[no-untyped-def]
    """Add a user with a role (operator, provider, analyst, reviewer) and an organisation."""
    return services().users.add(actor(), data["name"], data["role"], data["organisation"]), 201


@bp.get("/users/<name>")
@requires("operator")
def show_user(name: str):  # type: ignore[no-untyped-def]
    """One user."""
    return services().users.get(name)


@bp.get("/tokens")
@requires("operator")
@query(bp, TokenListArgs)
def list_tokens(args: dict):  # type: ignore[no-untyped-def]
    """Tokens (never their secrets), optionally of one user."""
    return services().users.tokens(args.get("user"))


@bp.post("/tokens")
@requires("operator", status=201)
@body(bp, TokenCreate)
def create_token(data: dict):  # type: ignore[no-untyped-def]
    """Make a token for a user; the token itself is in this answer only (stored hashed)."""
    token, info = services().users.create_token(actor(), data["user"], days=data["days"], label=data["label"])
    return {**info, "token": token}, 201


@bp.post("/tokens/<token_id>/revoke")
@requires("operator")
def revoke_token(token_id: str):  # type: ignore[no-untyped-def]
    """Revoke a token at once."""
    return services().users.revoke_token(actor(), token_id)
