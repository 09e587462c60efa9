"""Job latency, submit -> result, for a small one-query script: cold containers vs the pool,
against a bare hardened `docker run` of the same image measured in the same run.

    python bench/bench_jobs.py [--runs 30] [--farmers 100000] [--pool 2]

Each job is submitted through ``Jobs.submit`` (script check included) while a worker runs
``run_forever`` in a thread, as ``sandbox worker`` does; the clock stops when the job's final
state is visible in the database (what ``sandbox job status`` would show). Each job asks a
fresh question (a slightly different epsilon), so none is answered from the cache. For the
pool, the pool refills between jobs, as it would between jobs arriving in a queue.

Prints p50/p95 and the ratio of each p50 to the bare `docker run` p50, then where the time of
a pooled job goes (medians, from the job record and the audit log).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runners import Limits  # noqa: E402
from runners.docker_runner import DockerRunner  # noqa: E402
from runners.image import ensure_image  # noqa: E402
from sandbox.actors import Actor  # noqa: E402
from sandbox.demo_data import write_demo_csvs  # noqa: E402
from sandbox.home import Home  # noqa: E402
from sandbox.jobs.worker import Worker  # noqa: E402
from sandbox.services import Services  # noqa: E402
from timing import docker_run, measure, percentile as pct  # noqa: E402

POLICY = REPO / "policies" / "farm-credit.yaml"
OPERATOR = Actor("operator", "operator")
ANALYST = Actor("bank-analyst", "analyst")
SCRIPT = """from sandbox import sdk
print(sdk.dataset("farmers").agg(n=sdk.count(), epsilon={epsilon}))
"""
TRIVIAL = b"print('ok')\n"


class Bench:
    def __init__(self, services: Services, grant: str) -> None:
        self.services = services
        self.grant = grant
        self.n = 0
        self.ids: list[str] = []

    def job(self) -> None:
        self.n += 1
        source = SCRIPT.format(epsilon=round(0.005 + self.n * 1e-5, 6))
        job = self.services.jobs.submit(ANALYST, "bench.py", source, grant_id=self.grant)
        while True:
            state = self.services.jobs.get(job["id"]).state
            if state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.002)
        assert state == "succeeded", self.services.jobs.get(job["id"]).to_dict()
        self.ids.append(job["id"])


def idle(worker: Worker) -> bool:
    """Wait until the worker has cleaned up after its last job: jobs arrive one at a time."""
    while worker._running:
        time.sleep(0.005)
    time.sleep(0.05)
    return True


def with_worker(worker: Worker, fn):  # type: ignore[no-untyped-def]
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        return fn()
    finally:
        stop.set()
        thread.join(30)


def breakdown(services: Services, ids: list[str]) -> dict[str, float]:
    """Medians of each step of the jobs, in seconds."""
    def t(value: datetime | str) -> float:
        return (value if isinstance(value, datetime) else datetime.fromisoformat(value)).timestamp()

    steps: dict[str, list[float]] = {}
    entries = services.audit.entries()
    for job_id in ids:
        job = services.jobs.get(job_id)
        mine = [e for e in entries if e["objects"].get("job") == job_id]
        charged = t(next(e["time"] for e in mine if e["action"] == "query.charged"))
        released = t(next(e["time"] for e in mine if e["action"] == "query.released"))
        for name, value in (
            ("queued, until a worker claims it", t(job.started_at) - t(job.submitted_at)),
            ("claim -> first query charged (container start, Python, SDK)", charged - t(job.started_at)),
            ("query: charged -> released (broker, OpenDP)", released - charged),
            ("released -> job record final (exit, collect, finish)", t(job.finished_at) - released),
        ):
            steps.setdefault(name, []).append(value)
    return {k: statistics.median(v) for k, v in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--farmers", type=int, default=100_000)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between pooled jobs, for a started slot to finish its preloading")
    args = parser.parse_args()
    image = ensure_image()
    with tempfile.TemporaryDirectory(prefix="sbx-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o711)
        job_dir = base / "cli-job"
        job_dir.mkdir(mode=0o755)
        (job_dir / "main.py").write_bytes(TRIVIAL)
        services = Services.init(Home(base / "home"), OPERATOR)
        files = write_demo_csvs(base / "provider", n_farmers=args.farmers)
        services.catalog.add(files["farmers"], "farmers", POLICY, Actor("provider", "provider"))
        grant = services.grants.create(OPERATOR, analyst=ANALYST.name, datasets=["farmers"], epsilon=4.0,
                                       days=1, purpose="benchmark", user_type="public_welfare")["id"]
        bench = Bench(services, grant)
        limits = Limits()
        cold = Worker(services, runner=DockerRunner(root=base / "c"), image=image, limits=limits, pool_size=0)
        pooled_runner = DockerRunner(root=base / "p")
        pooled = Worker(services, runner=pooled_runner, image=image, limits=limits, pool_size=args.pool)
        pooled.recover()  # starts its pool, preloading what a job imports
        try:
            with_worker(cold, bench.job)  # warm up: OpenDP import, first vault read, image cache
            rows = {"docker run, hardened (baseline)": measure(lambda: docker_run(image, job_dir), args.runs)}
            rows["job, cold container"] = with_worker(cold, lambda: measure(bench.job, args.runs,
                                                                            before=lambda: idle(cold)))
            first_pooled = len(bench.ids)
            assert pooled_runner.pool is not None
            rows["job, pooled container"] = with_worker(pooled, lambda: measure(
                bench.job, args.runs, before=lambda: idle(pooled) and pooled_runner.pool.wait_ready(60)
                and time.sleep(args.settle) is None))
            steps = breakdown(services, bench.ids[first_pooled:])
        finally:
            cold.close()
            pooled.close()
            services.close()
    baseline = pct(rows["docker run, hardened (baseline)"], 50)
    print(f"{args.runs} runs each; {args.farmers} farmers; pool of {args.pool}, {args.settle:g} s between pooled jobs")
    print(f"{'':34} {'p50 s':>8} {'p95 s':>8} {'p50 / docker run':>17}")
    for name, values in rows.items():
        print(f"{name:34} {pct(values, 50):8.3f} {pct(values, 95):8.3f} {pct(values, 50) / baseline:17.2f}")
    print("\nwhere a pooled job's time goes (medians):")
    for name, value in steps.items():
        print(f"  {name:62} {value:6.3f} s")


if __name__ == "__main__":
    main()
