"""The runner's state machine: distinct uids, single-use pooled containers, idempotent steps,
kill, and the sweep that clears what a crashed worker left behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from runners import JobSpec, Limits, RunnerError
from runners.docker_runner import DockerRunner

pytestmark = pytest.mark.docker

UID_SCRIPT = b"import os, time\ntime.sleep(1)\nprint(os.getuid())\n"


def spec_for(image: str, tmp_path: Path, script: bytes, **limits) -> JobSpec:
    job_id = f"t-{uuid.uuid4().hex[:10]}"
    return JobSpec(job_id=job_id, image=image, command=["python3", "/job/main.py"], files={"main.py": script},
                   output_dir=tmp_path / job_id, limits=Limits(**{"timeout_s": 30, **limits}))


def test_concurrent_jobs_get_distinct_uids(runner: DockerRunner, image: str, tmp_path: Path) -> None:
    specs = [spec_for(image, tmp_path, UID_SCRIPT) for _ in range(3)]
    for spec in specs:
        runner.prepare(spec)
    for spec in specs:
        runner.start(spec)
    uids = []
    for spec in specs:
        assert runner.wait(spec) == "succeeded"
        uids.append(int(runner.collect(spec).stdout))
        runner.cleanup(spec)
    assert len(set(uids)) == 3
    assert runner.uids.held() == set()


def test_pooled_containers_serve_one_job_each(image: str, tmp_path: Path) -> None:
    runner = DockerRunner(root=tmp_path / "pooled", pool_size=1, pool_image=image)
    try:
        seen = []
        for _ in range(3):
            assert runner.pool is not None and runner.pool.wait_ready(60)
            spec = spec_for(image, tmp_path, b"import os\nprint(len(os.listdir('/tmp')), os.getuid())\n"
                                              b"open('/tmp/left-behind', 'w').write('x')\n")
            runner.prepare(spec)
            container_id = runner._job(spec).container.id
            runner.start(spec)
            assert runner.wait(spec) == "succeeded"
            result = runner.collect(spec)
            assert result.stdout.split()[0] == "0"  # a fresh /tmp: nothing from an earlier job
            runner.cleanup(spec)
            assert not runner.client.api.containers(all=True, filters={"id": container_id})
            assert container_id not in seen
            seen.append(container_id)
    finally:
        runner.close()
    assert runner.labelled(f"sandbox.root={runner.root}") == []


def test_pool_is_skipped_for_other_limits(image: str, tmp_path: Path) -> None:
    runner = DockerRunner(root=tmp_path / "pooled", pool_size=1, pool_image=image)
    try:
        assert runner.pool is not None and runner.pool.wait_ready(60)
        spec = spec_for(image, tmp_path, b"print('cold')\n", memory_mb=256)
        runner.prepare(spec)
        assert not runner._job(spec).pooled
        runner.start(spec)
        assert runner.wait(spec) == "succeeded"
        runner.cleanup(spec)
    finally:
        runner.close()


def test_steps_are_idempotent(runner: DockerRunner, image: str, tmp_path: Path) -> None:
    spec = spec_for(image, tmp_path, b"print('once')\n")
    assert runner.prepare(spec) == runner.prepare(spec)
    runner.start(spec)
    runner.start(spec)
    assert runner.wait(spec) == "succeeded" and runner.wait(spec) == "succeeded"
    first = runner.collect(spec)
    assert runner.collect(spec) is first and first.stdout == "once\n"
    runner.kill(spec)  # already ended: nothing to do
    runner.cleanup(spec)
    runner.cleanup(spec)
    with pytest.raises(RunnerError):
        runner.start(spec)


def test_wait_with_timeout_returns_running_then_kill(runner: DockerRunner, image: str, tmp_path: Path) -> None:
    spec = spec_for(image, tmp_path, b"import time\ntime.sleep(60)\n")
    runner.prepare(spec)
    runner.start(spec)
    assert runner.wait(spec, timeout=0.5) == "running"
    runner.kill(spec)
    assert runner.wait(spec) == "killed" and runner.collect(spec).state == "killed"
    runner.cleanup(spec)
    assert runner.labelled(f"sandbox.job={spec.job_id}") == []


def test_sweep_removes_what_a_crashed_worker_left(image: str, tmp_path: Path) -> None:
    root = tmp_path / "shared-root"
    crashed = DockerRunner(root=root)
    orphan = spec_for(image, tmp_path, b"import time\ntime.sleep(300)\n")
    alive = spec_for(image, tmp_path, b"import time\ntime.sleep(300)\n")
    for spec in (orphan, alive):
        crashed.prepare(spec)
        crashed.start(spec)
    survivor = DockerRunner(root=root)  # a new worker process after the crash
    try:
        removed = survivor.sweep(alive=[alive.job_id])
        assert crashed._job(orphan).container.id in removed
        assert crashed._job(alive).container.id not in removed
        assert survivor.labelled(f"sandbox.job={orphan.job_id}") == []
        assert len(survivor.labelled(f"sandbox.job={alive.job_id}")) == 1
        assert sorted(p.name for p in (root / "jobs").iterdir()) == [alive.job_id]
        survivor.cleanup(alive)  # not known to this runner: found by its label
        assert survivor.labelled(f"sandbox.root={survivor.root}") == [] and list((root / "jobs").iterdir()) == []
    finally:
        survivor.sweep()
