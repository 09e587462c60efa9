"""Latency of one trivial job: bare hardened `docker run` (CLI, the baseline) vs DockerRunner
cold vs pooled. Prints p50/p95 over N runs and ratios against the baseline of the same run.

    python bench/bench_runners.py [--runs 30]
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

from runners import JobSpec, Limits
from runners.docker_runner import DockerRunner
from runners.image import ensure_image
from timing import docker_run, measure, percentile as p

SCRIPT = b"print('ok')\n"


def runner_job(runner: DockerRunner, image: str, out: Path) -> None:
    spec = JobSpec(job_id=f"b-{uuid.uuid4().hex[:10]}", image=image, command=["python3", "/job/main.py"],
                   files={"main.py": SCRIPT}, output_dir=out, limits=Limits())
    runner.prepare(spec)
    runner.start(spec)
    assert runner.wait(spec) == "succeeded"
    assert runner.collect(spec).stdout == "ok\n"
    runner.cleanup(spec)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    image = ensure_image()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        job_dir = tmp_path / "cli-job"
        job_dir.mkdir(mode=0o755)
        (job_dir / "main.py").write_bytes(SCRIPT)
        tmp_path.chmod(0o711)
        cold = DockerRunner(root=tmp_path / "cold")
        pooled = DockerRunner(root=tmp_path / "pooled", pool_size=2, pool_image=image)
        assert pooled.pool is not None
        try:
            rows = {
                "docker run (CLI, hardened)": measure(lambda: docker_run(image, job_dir), args.runs),
                "DockerRunner cold": measure(lambda: runner_job(cold, image, tmp_path / "out"), args.runs),
                # the pool refills between jobs, as it would between jobs arriving in a queue
                "DockerRunner pooled": measure(lambda: runner_job(pooled, image, tmp_path / "out"), args.runs,
                                               before=lambda: pooled.pool.wait_ready(60)),
            }
        finally:
            pooled.close()
    base = p(rows["docker run (CLI, hardened)"], 50)
    print(f"{'':28} {'p50 s':>8} {'p95 s':>8} {'p50 ratio':>10}")
    for name, values in rows.items():
        print(f"{name:28} {p(values, 50):8.3f} {p(values, 95):8.3f} {p(values, 50) / base:10.2f}")


if __name__ == "__main__":
    main()
