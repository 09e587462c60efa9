"""Result files: the only writable place a script is handed."""
from __future__ import annotations

import os

from sandbox.sdk.errors import OutputRefused

DEFAULT_OUTPUT = "/job/out"
ALLOWED_EXTENSIONS = ("csv", "json", "txt", "png")
MAX_NAME = 100


def output_dir() -> str:
    return os.environ.get("SANDBOX_OUTPUT") or DEFAULT_OUTPUT


def check_name(name: object) -> str:
    """``name`` if it is a plain, allowed result file name, else OutputRefused."""
    if not isinstance(name, str):
        raise OutputRefused("an output name must be a string such as 'by_county.csv'")
    hint = "use a plain file name such as 'by_county.csv'"
    if not name or len(name) > MAX_NAME:
        raise OutputRefused(f"an output name must have 1 to {MAX_NAME} characters", hint)
    if "/" in name or "\\" in name or "\x00" in name:
        raise OutputRefused("an output name must not contain a path separator", hint)
    if name.startswith("."):
        raise OutputRefused("an output name must not start with a dot", hint)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise OutputRefused("an output name must not contain control characters", hint)
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or ext.lower() not in ALLOWED_EXTENSIONS:
        raise OutputRefused(
            f"an output file must end in one of: {', '.join('.' + e for e in ALLOWED_EXTENSIONS)}",
            "results are handed back only as csv, json, txt or png files",
        )
    return name


def output(name: str) -> str:
    """The path to write result file ``name`` to, inside the job's output folder.

    >>> df.to_csv(sdk.output("by_county.csv"))
    """
    return os.path.join(output_dir(), check_name(name))


def is_output_path(path: object) -> bool:
    """True if ``path`` names a file directly inside the output folder with an allowed name."""
    try:
        text = os.fspath(path)  # type: ignore[arg-type]
    except TypeError:
        return False
    if not isinstance(text, str):
        return False
    folder = os.path.realpath(output_dir())
    full = os.path.realpath(text)
    if os.path.dirname(full) != folder:
        return False
    try:
        check_name(os.path.basename(full))
    except OutputRefused:
        return False
    return True
