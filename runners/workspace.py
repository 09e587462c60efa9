"""The job folder on the host: ``job/`` (read-only in the job) holding the job's files and the
broker socket, and ``job/out/`` (read-write), a size-limited tmpfs so a job cannot fill the
host's disk whatever it writes."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from .base import SOCKET_NAME, Limits, RunnerError, Workspace

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
RESERVED = {"out", SOCKET_NAME}


def safe_key(job_id: str) -> str:
    """A folder name for any job id (ids are not trusted to be path-safe)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", job_id):
        return job_id
    return "h" + hashlib.sha256(job_id.encode()).hexdigest()[:32]


def create(base: Path, uid: int, limits: Limits) -> Workspace:
    """Make ``base/job`` and a tmpfs at ``base/job/out`` owned by ``uid`` (idempotent)."""
    job = base / "job"
    out = job / "out"
    out.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)
    job.chmod(0o755)
    if not os.path.ismount(out):
        size_kb = (limits.output_bytes + limits.fsize_mb * 2**20) // 1024 + 64
        opts = f"size={size_kb}k,nr_inodes={4 * limits.output_files + 64},mode=0700,uid={uid},gid={uid}"
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"{opts},nosuid,nodev,noexec", "tmpfs", str(out)],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            # Not root: fall back to a plain folder; each file is still capped by RLIMIT_FSIZE.
            log.warning("cannot mount a tmpfs for outputs (%s): output total is not capped", exc)
            os.chown(out, uid, uid)
            out.chmod(0o700)
    return Workspace(job_dir=job, out_dir=out, socket_path=job / SOCKET_NAME, uid=uid)


def write_files(ws: Workspace, files: Mapping[str, bytes]) -> None:
    """Write the job's files read-only; names are plain file names, never paths."""
    for name, content in files.items():
        if not FILE_NAME.fullmatch(name) or name in RESERVED:
            raise RunnerError(f"job file name {name!r} is not allowed: use a plain name like main.py")
        path = ws.job_dir / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        path.chmod(0o444)


def grant_socket(ws: Workspace) -> None:
    """Let only the job's uid connect to the broker socket (if the broker made one)."""
    if ws.socket_path.is_socket():
        os.chown(ws.socket_path, ws.uid, ws.uid)
        ws.socket_path.chmod(0o600)


def destroy(base: Path) -> None:
    """Unmount the output tmpfs and remove the folder (idempotent)."""
    out = base / "job" / "out"
    if os.path.ismount(out):
        subprocess.run(["umount", "-l", str(out)], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
