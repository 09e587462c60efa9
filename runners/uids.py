"""Distinct host uids for concurrent jobs, so no two jobs share files, signals or NPROC counts.

A uid is held by an exclusive ``flock`` on ``<dir>/<uid>.lock``: several worker processes on one
host never hand out the same uid, and a crashed process releases its uids with its file handles.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from .base import RunnerError


class UidPool:
    def __init__(self, lock_dir: Path, first: int = 20000, count: int = 10000) -> None:
        self._dir = lock_dir
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._range = range(first, first + count)
        self._held: dict[int, int] = {}  # uid -> fd of its lock
        self._lock = threading.Lock()

    def acquire(self) -> int:
        with self._lock:
            for uid in self._range:
                if uid in self._held:
                    continue
                fd = os.open(self._dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._held[uid] = fd
                return uid
        raise RunnerError(f"all {len(self._range)} job uids are in use: wait for jobs to finish")

    def release(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)

    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)
