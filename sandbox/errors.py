"""Errors a user can meet.

Every refusal carries a stable ``code``, a message that says what was wrong, and a
``hint`` that says what to do. Messages must never contain a data value: they are
built from names in the public schema and policy only, never from rows.
"""
from __future__ import annotations


class SandboxError(Exception):
    """Base of every error shown to a user (CLI, API, SDK)."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class NotFound(SandboxError):
    code = "not_found"


class AlreadyExists(SandboxError):
    code = "already_exists"


class InvalidInput(SandboxError):
    """Malformed files, arguments or documents supplied by the caller."""

    code = "invalid_input"


class PolicyInvalid(InvalidInput):
    code = "policy_invalid"


class QueryInvalid(InvalidInput):
    code = "query_invalid"


class PolicyRefused(SandboxError):
    """The request is well formed but the policy or grant does not allow it."""

    code = "policy_refused"


class GrantInactive(PolicyRefused):
    code = "grant_inactive"


class BudgetExceeded(PolicyRefused):
    code = "budget_exceeded"


class NotInitialised(SandboxError):
    code = "not_initialised"


class AuthFailed(SandboxError):
    """No token, or a token that is malformed, unknown, wrong, expired or revoked."""

    code = "unauthorized"


class Forbidden(PolicyRefused):
    """The actor is known but its role (or ownership) does not allow the action."""

    code = "forbidden"


class Conflict(SandboxError):
    """The object is not in a state that allows the action (e.g. approving a refused application)."""

    code = "conflict"
