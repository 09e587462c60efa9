"""Run an analysis script in the container: ``python -m sandbox.sdk.harness /job/script.py``.

The script runs under the guard (sandbox.sdk.guard). Outcomes, on stderr, one line each, never a
traceback:

* an SDK error: ``error [budget_exceeded]: <message> (<hint>)``, exit code by kind
  (see ``sandbox.sdk.errors.EXIT_CODES``: 10 query_invalid, 11 policy_refused, 12 budget_exceeded,
  13 grant_inactive, 14 broker unavailable, 15 output refused, 16 script refused, 17 other);
* a script refused by the guard: one ``line N [rule]: message`` per violation, exit 16;
* any other exception: ``script error: <Type> at line N: <message>`` (message cut short), exit 1.

Environment: ``SANDBOX_SOCKET``, ``SANDBOX_OUTPUT``, ``SANDBOX_MOCK``, ``SANDBOX_TIMEOUT``, and
``SANDBOX_ALLOWED_IMPORTS`` (comma-separated; default: the guard's DEFAULT_ALLOWED).
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from sandbox.sdk.errors import EXIT_SCRIPT_ERROR, EXIT_USAGE, SandboxError, exit_code_for

MAX_MESSAGE = 200


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _script_line(exc: BaseException, script: str) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == script:
            line = frame.lineno
    return line


def _allowed() -> tuple[str, ...] | None:
    raw = os.environ.get("SANDBOX_ALLOWED_IMPORTS", "").strip()
    return tuple(m.strip() for m in raw.split(",") if m.strip()) or None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m sandbox.sdk.harness SCRIPT.py", file=sys.stderr)
        return EXIT_USAGE
    path = Path(argv[0])
    try:
        path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read the script {path.name} ({type(exc).__name__})", file=sys.stderr)
        return EXIT_USAGE

    from sandbox.sdk import guard
    from sandbox.sdk.query import announce_mock, is_mock

    if is_mock():
        announce_mock()
    script = str(path)
    try:
        guard.run_script(path, _allowed())
    except SandboxError as err:
        violations = getattr(err, "violations", None)
        if violations:
            print(f"script refused: {len(violations)} problem(s) with the sandbox policy", file=sys.stderr)
            for v in violations:
                print(f"  {v}", file=sys.stderr)
        else:
            line = _script_line(err, script)
            where = f" (line {line})" if line else ""
            print(f"error [{err.code}]{where}: {_short(str(err))}", file=sys.stderr)
        sys.stdout.flush()
        return exit_code_for(err)
    except SystemExit as exc:  # `raise SystemExit` in a script: 0 stays 0, anything else is 1
        sys.stdout.flush()
        return 0 if exc.code in (None, 0) else EXIT_SCRIPT_ERROR
    except KeyboardInterrupt:
        print("script interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:  # noqa: BLE001 - every other failure is reported the same way
        line = _script_line(exc, script)
        where = f" at line {line}" if line else ""
        message = _short(str(exc))
        print(f"script error: {type(exc).__name__}{where}" + (f": {message}" if message else ""),
              file=sys.stderr)
        sys.stdout.flush()
        return EXIT_SCRIPT_ERROR
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown (with pandas and matplotlib loaded it takes a few hundred
    # ms on a job's critical path): every output file is closed by now, and nothing else matters.
    os._exit(code)
