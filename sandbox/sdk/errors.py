"""Errors an analysis script can meet.

These mirror ``sandbox.errors`` (same ``code`` strings, same shape: message + hint) but are
defined here because the analysis image ships only ``sandbox.sdk``. Messages name the cause
(a column, a dataset, a rule) and never contain a data value.
"""
from __future__ import annotations

__all__ = [
    "SandboxError", "QueryInvalid", "PolicyRefused", "BudgetExceeded", "GrantInactive",
    "BrokerUnavailable", "OutputRefused", "ScriptRefused", "error_from_wire", "exit_code_for",
    "EXIT_CODES",
]


class SandboxError(Exception):
    """Base of every error the SDK raises to a script."""

    code = "error"

    def __init__(self, message: str, hint: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class QueryInvalid(SandboxError):
    """The query is malformed or names something the schema does not have."""

    code = "query_invalid"


class PolicyRefused(SandboxError):
    """The query is well formed but the policy or the grant does not allow it."""

    code = "policy_refused"


class GrantInactive(PolicyRefused):
    """The grant has expired, was revoked, or does not cover this dataset."""

    code = "grant_inactive"


class BudgetExceeded(PolicyRefused):
    """Answering would spend more privacy budget than the grant has left."""

    code = "budget_exceeded"


class BrokerUnavailable(SandboxError):
    """The broker could not be reached, or failed to answer."""

    code = "broker_unavailable"


class OutputRefused(SandboxError):
    """A result file name or path that the sandbox will not hand back."""

    code = "output_refused"


class ScriptRefused(PolicyRefused):
    """The script used something the sandbox's script policy does not allow."""

    code = "script_refused"


# Wire codes (from sandbox/errors.py and the socket server) -> the class a script sees.
_BY_CODE: dict[str, type[SandboxError]] = {
    "query_invalid": QueryInvalid,
    "invalid_input": QueryInvalid,
    "not_found": QueryInvalid,
    "already_exists": QueryInvalid,
    "policy_invalid": PolicyRefused,
    "policy_refused": PolicyRefused,
    "forbidden": PolicyRefused,
    "unauthorized": PolicyRefused,
    "conflict": QueryInvalid,
    "grant_inactive": GrantInactive,
    "budget_exceeded": BudgetExceeded,
    "internal": BrokerUnavailable,
    "broker_unavailable": BrokerUnavailable,
    "not_initialised": BrokerUnavailable,
    "output_refused": OutputRefused,
    "script_refused": ScriptRefused,
}

# Exit codes of ``python -m sandbox.sdk.harness``: one per kind, most specific class first.
EXIT_CODES: dict[type[BaseException], int] = {
    QueryInvalid: 10,
    BudgetExceeded: 12,
    GrantInactive: 13,
    ScriptRefused: 16,
    PolicyRefused: 11,
    BrokerUnavailable: 14,
    OutputRefused: 15,
    SandboxError: 17,
}
EXIT_SCRIPT_ERROR = 1   # the script raised something that is not an SDK error
EXIT_USAGE = 2          # the harness was called wrongly, or the script file is unreadable


def error_from_wire(error: object) -> SandboxError:
    """The SDK exception for an ``error`` object of a broker response."""
    if not isinstance(error, dict):
        return BrokerUnavailable("the broker sent a malformed error", "report this to the operator")
    code = error.get("code")
    code = code if isinstance(code, str) and code else "error"
    message = error.get("message")
    message = message if isinstance(message, str) and message else "the broker refused the request"
    hint = error.get("hint")
    hint = hint if isinstance(hint, str) else ""
    cls = _BY_CODE.get(code, SandboxError)
    return cls(message, hint, code=code)


def exit_code_for(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_SCRIPT_ERROR
