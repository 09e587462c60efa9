"""A Python client of the sandbox's JSON API: one method per route.

    from sandbox.client import Client
    c = Client("http://127.0.0.1:8750", token="sbx_…")
    job = c.submit(open("analysis.py").read(), name="analysis.py", grant_id="g-1234abcd")

Errors come back as the same ``SandboxError`` subclasses the server raised, chosen by the
error's stable ``code`` (``not_found`` → ``NotFound``, ``budget_exceeded`` →
``BudgetExceeded``, …); ``err.code`` is the server's code and ``err.status`` the HTTP status.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from sandbox import errors as E

#: Codes of the web layer itself, mapped to the nearest domain class.
_TRANSPORT = {
    "invalid_input": E.InvalidInput, "malformed_json": E.InvalidInput, "invalid_unicode": E.InvalidInput,
    "bad_request": E.InvalidInput, "too_large": E.InvalidInput, "unsupported_media_type": E.InvalidInput,
    "script_refused": E.InvalidInput, "not_found": E.NotFound, "conflict": E.Conflict,
    "unauthorized": E.AuthFailed, "forbidden": E.Forbidden,
}


def _classes() -> dict[str, type[E.SandboxError]]:
    found: dict[str, type[E.SandboxError]] = {}
    stack: list[type[E.SandboxError]] = [E.SandboxError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return {**found, **_TRANSPORT}


#: What a token may hold: printable ASCII, no spaces (a header value cannot carry line breaks).
_TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")


class Unreachable(E.SandboxError):
    code = "unreachable"


class ServerError(E.SandboxError):
    code = "internal"


def error_from(status: int, payload: Any) -> E.SandboxError:
    """The SandboxError for an error response (by its code; by the status if the body is not ours)."""
    info = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(info, dict):
        info = {"code": "internal" if status >= 500 else "bad_request",
                "message": f"the server answered HTTP {status} without an error body",
                "hint": "check that --server points at a sandbox API"}
    code = str(info.get("code") or "error")
    cls = _classes().get(code) or (ServerError if status >= 500 else E.SandboxError)
    err = cls(str(info.get("message", "")), str(info.get("hint", "")))
    err.code = code  # the server's own code, even where the class is a broader one
    err.status = status  # type: ignore[attr-defined]
    err.details = {k: v for k, v in info.items() if k not in ("code", "message", "hint")}  # type: ignore[attr-defined]
    return err


class Client:
    def __init__(self, server_url: str, token: str | None = None, *, timeout: float = 120.0,
                 session: requests.Session | None = None) -> None:
        scheme = urlsplit(server_url.strip()).scheme.lower()
        if scheme not in ("http", "https") or "://" not in server_url:
            raise E.InvalidInput(
                f"the server URL needs http:// or https:// (got {server_url!r})",
                "set --server / $SANDBOX_SERVER to the whole URL, e.g. http://127.0.0.1:8750")
        if token and not _TOKEN_TEXT.fullmatch(token):
            raise E.InvalidInput(
                "the token contains characters a token cannot have; pass only the token itself",
                "set $SANDBOX_TOKEN / --token to the one line `sandbox token create` printed, "
                "without spaces, quotes or line breaks")
        self.base = server_url.strip().rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = session or requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, params: dict | None = None, json: Any = None,
              files: dict | None = None, data: dict | None = None) -> requests.Response:
        url = f"{self.base}/api/v1{path}"
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self.http.request(method, url, params=params, json=json, files=files, data=data,
                                     timeout=self.timeout)
        except requests.RequestException as err:
            raise Unreachable(f"cannot reach the sandbox server at {self.base} ({type(err).__name__})",
                              "check --server / $SANDBOX_SERVER and that `sandbox serve` runs there") from None
        if resp.status_code >= 400:
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            raise error_from(resp.status_code, payload)
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._send(method, path, **kw).json()

    # -- identity, users, tokens --------------------------------------------------------------

    def me(self) -> dict:
        return self._json("GET", "/me")

    def users(self) -> list[dict]:
        return self._json("GET", "/users")

    def user(self, name: str) -> dict:
        return self._json("GET", f"/users/{name}")

    def add_user(self, name: str, role: str, organisation: str | None = None) -> dict:
        return self._json("POST", "/users", json={"name": name, "role": role, "organisation": organisation})

    def tokens(self, user: str | None = None) -> list[dict]:
        return self._json("GET", "/tokens", params={"user": user})

    def create_token(self, user: str, days: int = 90, label: str = "") -> tuple[str, dict]:
        info = self._json("POST", "/tokens", json={"user": user, "days": days, "label": label})
        return info.pop("token"), info

    def revoke_token(self, token_id: str) -> dict:
        return self._json("POST", f"/tokens/{token_id}/revoke")

    # -- catalog ------------------------------------------------------------------------------

    def datasets(self) -> list[dict]:
        return self._json("GET", "/datasets")

    def dataset(self, name: str) -> dict:
        return self._json("GET", f"/datasets/{name}")

    def mock_csv(self, name: str, rows: int = 1000, seed: int = 0) -> str:
        return self._send("GET", f"/datasets/{name}/mock", params={"rows": rows, "seed": seed}).text

    def add_dataset(self, path: str | Path, name: str, policy: str | Path, *, replace: bool = False,
                    drop_undeclared: bool = False) -> dict:
        path, policy = Path(path), Path(policy)
        with path.open("rb") as data, policy.open("rb") as pol:
            return self._json("POST", "/datasets", files={"data": (path.name, data), "policy": (policy.name, pol)},
                              data={"name": name, "replace": str(replace).lower(),
                                    "drop_undeclared": str(drop_undeclared).lower()})

    def dataset_usage(self, name: str) -> dict:
        return self._json("GET", f"/datasets/{name}/usage")

    # -- grants and budgets -------------------------------------------------------------------

    def grants(self, analyst: str | None = None) -> list[dict]:
        return self._json("GET", "/grants", params={"analyst": analyst})

    def grant(self, grant_id: str) -> dict:
        return self._json("GET", f"/grants/{grant_id}")

    def create_grant(self, *, analyst: str, datasets: list[str], purpose: str, epsilon: float | None = None,
                     days: int = 90, user_type: str = "public_welfare", columns: list[str] | None = None,
                     operations: list[str] | None = None) -> dict:
        return self._json("POST", "/grants", json={
            "analyst": analyst, "datasets": list(datasets), "purpose": purpose, "epsilon": epsilon, "days": days,
            "user_type": user_type, "columns": columns, "operations": operations})

    def revoke_grant(self, grant_id: str, reason: str) -> dict:
        return self._json("POST", f"/grants/{grant_id}/revoke", json={"reason": reason})

    def extend_grant(self, grant_id: str, days: int) -> dict:
        return self._json("POST", f"/grants/{grant_id}/extend", json={"days": days})

    def budget(self, grant_id: str) -> list[dict]:
        return self._json("GET", f"/grants/{grant_id}/budget")

    def history(self, grant_id: str) -> list[dict]:
        return self._json("GET", f"/grants/{grant_id}/history")

    def preview(self, grant_id: str, query: dict) -> dict:
        return self._json("POST", f"/grants/{grant_id}/preview", json={"query": query})

    def ask(self, grant_id: str, query: dict) -> dict:
        return self._json("POST", f"/grants/{grant_id}/query", json={"query": query})

    # -- jobs ---------------------------------------------------------------------------------

    def submit(self, script: str, name: str = "script.py", *, grant_id: str | None = None, mock: bool = False,
               datasets: list[str] | None = None) -> dict:
        """Queue a script; a script the check refuses comes back as its job (state ``refused``)."""
        try:
            return self._json("POST", "/jobs", json={"script": script, "name": name, "grant_id": grant_id,
                                                     "mock": mock, "datasets": datasets})
        except E.InvalidInput as err:
            job = getattr(err, "details", {}).get("job")
            if err.code == "script_refused" and isinstance(job, dict):
                return job
            raise

    def jobs(self, owner: str | None = None, limit: int = 50) -> list[dict]:
        return self._json("GET", "/jobs", params={"owner": owner, "limit": limit})

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{job_id}")

    def job_logs(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{job_id}/logs")

    def job_script(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{job_id}/script")

    def job_results(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{job_id}/results")

    def job_output(self, job_id: str, name: str) -> bytes:
        return self._send("GET", f"/jobs/{job_id}/outputs/{requests.utils.quote(name, safe='')}").content

    def cancel_job(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def wait_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in ("succeeded", "failed", "cancelled", "refused") or time.monotonic() > deadline:
                return job
            time.sleep(poll)

    # -- applications -------------------------------------------------------------------------

    def apply(self, *, datasets: list[str], purpose: str, scenario: str, epsilon: float | None = None,
              days: int = 90, user_type: str = "public_welfare") -> dict:
        return self._json("POST", "/applications", json={
            "datasets": list(datasets), "purpose": purpose, "scenario": scenario, "epsilon": epsilon,
            "days": days, "user_type": user_type})

    def applications(self, *, analyst: str | None = None, state: str | None = None,
                     overdue: bool | None = None) -> list[dict]:
        return self._json("GET", "/applications", params={
            "analyst": analyst, "state": state, "overdue": None if overdue is None else str(overdue).lower()})

    def application(self, app_id: str) -> dict:
        return self._json("GET", f"/applications/{app_id}")

    def approve(self, app_id: str, *, epsilon: float | None = None, days: int | None = None, note: str = "") -> dict:
        return self._json("POST", f"/applications/{app_id}/approve",
                          json={"epsilon": epsilon, "days": days, "note": note})

    def refuse(self, app_id: str, reason: str) -> dict:
        return self._json("POST", f"/applications/{app_id}/refuse", json={"reason": reason})

    def ask_info(self, app_id: str, question: str) -> dict:
        return self._json("POST", f"/applications/{app_id}/ask", json={"question": question})

    def reply(self, app_id: str, text: str) -> dict:
        return self._json("POST", f"/applications/{app_id}/reply", json={"text": text})

    def withdraw(self, app_id: str) -> dict:
        return self._json("POST", f"/applications/{app_id}/withdraw")

    # -- audit --------------------------------------------------------------------------------

    def audit_entries(self, *, last: int | None = None, action: str | None = None, actor: str | None = None,
                      grant_id: str | None = None, dataset: str | None = None, since: str | None = None,
                      until: str | None = None) -> list[dict]:
        return self._json("GET", "/audit/entries", params={
            "last": last, "action": action, "actor": actor, "grant": grant_id, "dataset": dataset,
            "since": since, "until": until})

    def audit_entry(self, seq: int) -> dict:
        return self._json("GET", f"/audit/entries/{int(seq)}")

    def audit_checkpoint(self) -> dict:
        return self._json("GET", "/audit/checkpoint")

    def audit_checkpoints(self) -> list[dict]:
        return self._json("GET", "/audit/checkpoints")

    def audit_consistency(self, old: int, new: int) -> dict:
        return self._json("GET", "/audit/consistency", params={"old": old, "new": new})

    def audit_verify(self) -> dict:
        return self._json("GET", "/audit/verify")

    def audit_key(self) -> bytes:
        return self._send("GET", "/audit/key").content

    def audit_export(self) -> bytes:
        return self._send("GET", "/audit/export").content

    def audit_export_checkpoints(self) -> bytes:
        return self._send("GET", "/audit/export/checkpoints").content

    # -- disclosure ---------------------------------------------------------------------------

    def disclosure(self, section: str | None = None) -> dict:
        return self._json("GET", "/disclosure", params={"section": section})

    def disclosure_csv(self, section: str | None = None) -> str:
        return self._send("GET", "/disclosure", params={"format": "csv", "section": section}).text
