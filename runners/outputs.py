"""Accept a job's output files: only regular files at the top of the output folder, with an
allowed extension, within the per-file and total caps; never following a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .base import Limits, OutputFile
from .workspace import FILE_NAME

EXTENSIONS = {".csv", ".json", ".txt", ".png"}
MAX_REFUSALS = 100


def collect(out_dir: Path, dest: Path, limits: Limits) -> tuple[list[OutputFile], dict[str, str]]:
    """Copy accepted files into ``dest``; return them and the refused names with reasons."""
    accepted: list[OutputFile] = []
    refused: dict[str, str] = {}
    total = 0
    per_file = min(limits.fsize_mb * 2**20, limits.output_bytes)
    try:
        names = sorted(os.listdir(out_dir))
    except FileNotFoundError:
        return accepted, refused
    for name in names:
        if len(refused) >= MAX_REFUSALS:
            refused["..."] = "more files refused"
            break
        shown = name.encode("utf-8", "backslashreplace").decode()
        if not FILE_NAME.fullmatch(name) or os.path.splitext(name)[1].lower() not in EXTENSIONS:
            refused[shown] = f"name must be plain and end in one of {sorted(EXTENSIONS)}"
            continue
        if len(accepted) >= limits.output_files:
            refused[shown] = f"more than {limits.output_files} output files"
            continue
        try:
            fd = os.open(out_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            refused[shown] = "not a regular file (symlinks are refused)"
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                refused[shown] = "not a regular file"
                continue
            if st.st_size > per_file or total + st.st_size > limits.output_bytes:
                refused[shown] = f"too large: {st.st_size} bytes (each <= {per_file}, all <= {limits.output_bytes})"
                continue
            data = _read_at_most(fd, st.st_size + 1)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            refused[shown] = "changed while being collected"
            continue
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / name
        target.unlink(missing_ok=True)
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(out, "wb") as f:
            f.write(data)
        total += len(data)
        accepted.append(OutputFile(name, len(data)))
    return accepted, refused


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    while limit > 0 and (chunk := os.read(fd, min(limit, 2**20))):
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)
