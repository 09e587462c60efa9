"""Pre-started, single-use containers: container start-up off a job's critical path.

Each slot is a job folder, a uid and a hardened container created for them and started with
the waiter, which blocks reading ``/job/.start`` (a FIFO). ``take`` hands a ready slot to one
job (its files are then written into the slot's folder, the broker's socket created there);
the slot never returns to the pool, and a background thread starts a replacement.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from docker.models.containers import Container

from . import workspace
from .base import JobSpec, Limits, Workspace, job_env
from .docker_runner import SLOT_LABEL, START_FIFO, _Job, waiter

if TYPE_CHECKING:
    from .docker_runner import DockerRunner

log = logging.getLogger(__name__)

# Limits fixed when a container is created; the rest (timeout, caps) apply per job anyway.
_CONTAINER_LIMITS = ("memory_mb", "cpus", "pids", "tmpfs_mb", "nofile", "fsize_mb", "output_bytes", "output_files")


def _shape(limits: Limits) -> tuple:
    return tuple(getattr(limits, name) for name in _CONTAINER_LIMITS)


@dataclass
class _Slot:
    name: str
    ws: Workspace
    container: Container


class Pool:
    def __init__(self, runner: DockerRunner, image: str, limits: Limits, size: int,
                 preload: Sequence[str] = ()) -> None:
        self.runner = runner
        self.waiter = waiter(preload)
        self.image = image
        self.digest = runner.image_digest(image)
        self.limits = limits
        self.size = size
        self._ready: deque[_Slot] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._filler = threading.Thread(target=self._fill, name="sandbox-pool", daemon=True)
        self._filler.start()

    def take(self, spec: JobSpec) -> _Job | None:
        """A started slot for this job, or None when none fits or none is ready."""
        if spec.image not in (self.image, self.digest) or _shape(spec.limits) != _shape(self.limits):
            return None
        with self._cond:
            if not self._ready:
                return None
            slot = self._ready.popleft()
            self._cond.notify_all()
        return _Job(spec=spec, base=slot.ws.job_dir.parent, ws=slot.ws, container=slot.container,
                    image_digest=self.digest, pooled=True)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until the pool is full (for tests and benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ready) >= self.size, timeout)

    def container_ids(self) -> set[str]:
        with self._cond:
            return {s.container.id for s in self._ready}

    def slot_names(self) -> set[str]:
        with self._cond:
            return {s.name for s in self._ready}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._filler.join(timeout=60)
        with self._cond:
            slots, self._ready = list(self._ready), deque()
        for slot in slots:
            self._discard(slot)

    def _fill(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or len(self._ready) < self.size)
                if self._closed:
                    return
            try:
                slot = self._new_slot()
            except Exception:  # keep the pool alive; jobs fall back to cold containers
                log.exception("could not start a pooled container")
                with self._cond:
                    self._cond.wait(timeout=5)
                continue
            with self._cond:
                if self._closed:
                    self._discard(slot)
                    return
                self._ready.append(slot)
                self._cond.notify_all()

    def _new_slot(self) -> _Slot:
        name = uuid.uuid4().hex[:16]
        base = self.runner.root / "slots" / name
        ws, container = self.runner.new_container(
            base, self.digest, ["python3", "-I", "-c", self.waiter], self.limits, job_env(), {SLOT_LABEL: name})
        os.mkfifo(ws.job_dir / START_FIFO, 0o600)
        os.chown(ws.job_dir / START_FIFO, ws.uid, ws.uid)
        container.start()
        return _Slot(name, ws, container)

    def _discard(self, slot: _Slot) -> None:
        self.runner._remove(slot.container.id)
        workspace.destroy(slot.ws.job_dir.parent)
        self.runner.uids.release(slot.ws.uid)
