"""Attacks through the whole pipeline: submitted as jobs, run by the worker in real containers.

Three layers are tried: the script check at submit, the guard inside the container (the
harness), and the container itself (a worker whose command bypasses the harness, with rows
inserted straight into the queue so that the check is bypassed too). Every attempt must fail,
and the canary planted in the raw rows must come out nowhere (see conftest).
"""
from __future__ import annotations

import json
import textwrap
import threading
import time

import pytest

from runners import Limits
from runners import workspace as runner_workspace
from sandbox.jobs.worker import Worker
from sandbox.sdk.query import count, dataset, mean

from .conftest import CANARY, LIMITS, Env

pytestmark = pytest.mark.docker

RAW = ["python3", "-I", "/job/script.py"]  # the container alone: no harness, no guard

# A guarded script's own probe: each attempt prints BLOCKED or ALLOWED.
GUARDED_PROBE = textwrap.dedent("""
    from sandbox import sdk
    import json, statistics, functools, operator, re, datetime, collections
    import numpy as np
    import pandas as pd
    import polars as pl
    import matplotlib.pyplot as plt
    results = {}
    def attempt(label, fn):
        try:
            fn()
            results[label] = "ALLOWED"
        except Exception as exc:
            results[label] = "BLOCKED " + str(exc)[:100]
""")
REPORT = "\nprint('RESULTS ' + json.dumps(results))\n"


def results_of(job) -> dict:  # type: ignore[no-untyped-def]
    assert job.state == "succeeded", (job.state, job.reason, job.stderr)
    line = [ln for ln in job.stdout.splitlines() if ln.startswith("RESULTS ")][-1]
    return json.loads(line[len("RESULTS "):])


def all_blocked(got: dict, *allowed: str) -> None:
    bad = {k: v for k, v in got.items() if k not in allowed and not str(v).startswith("BLOCKED")}
    assert not bad, bad


# -- layer 1 and 2: the check at submit, the guard in the container ---------------------------

BYPASS_SOURCE = "import os\nprint(os.listdir('/'))\n"


def test_check_refuses_and_harness_refuses_the_same_script_when_the_check_is_bypassed(env: Env) -> None:
    grant = env.grant()
    refused = env.submit(BYPASS_SOURCE, grant)
    assert refused["state"] == "refused" and refused["violations"][0]["rule"] == "import-not-allowed"
    assert refused["violations"][0]["line"] == 1
    assert env.services.jobs.claim("w", refused["id"]) is None

    job_id = env.insert_queued(BYPASS_SOURCE, grant)
    env.worker.run_next(job_id)
    job = env.services.jobs.get(job_id)
    assert job.state == "failed" and job.exit_code == 16, (job.reason, job.stderr)
    assert "script refused" in job.stderr and "line 1 [import-not-allowed]" in job.stderr
    assert job.stdout == "" and job.queries == []


def test_escapes_through_allowed_modules_are_refused_at_run_time(env: Env) -> None:
    """Each passes the static check (the module is reached through a container or a plain
    alias, or the name is built at run time); the module proxies and guards refuse it."""
    job = env.run(GUARDED_PROBE + textwrap.dedent("""
        mods = {"json": json, "stats": statistics, "ft": functools, "np": np, "pd": pd, "pl": pl,
                "op": operator, "re": re, "dt": datetime, "plt": plt}
        attempt("json.decoder", lambda: mods["json"].decoder)
        attempt("statistics.sys", lambda: mods["stats"].sys)
        attempt("functools.sys", lambda: getattr(mods["ft"], "sys"))
        attempt("numpy.fromstring", lambda: mods["np"].fromstring)
        attempt("numpy.os", lambda: mods["np"].os)
        attempt("numpy.random.bit_generator", lambda: mods["np"].random.bit_generator)
        attempt("pandas.HDFStore", lambda: mods["pd"].HDFStore)
        attempt("pandas.errors", lambda: getattr(mods["pd"], "errors"))
        attempt("polars.SQLContext", lambda: mods["pl"].SQLContext)
        attempt("re.sre_compile", lambda: mods["re"].enum)
        attempt("datetime.sys", lambda: mods["dt"].sys)
        attempt("pyplot.matplotlib", lambda: mods["plt"].matplotlib)
        template = "{0.__cla" + "ss__}"
        attempt("format reaches a dunder", lambda: template.format(1))
        attempt("format_map reaches a dunder", lambda: ("{x.__cla" + "ss__}").format_map({"x": 1}))
        attempt("operator.sys", lambda: mods["op"].sys)
        attempt("write a csv to /etc", lambda: pd.DataFrame({"a": [1]}).to_csv("/etc/evil.csv"))
        attempt("write a csv to scratch", lambda: pd.DataFrame({"a": [1]}).to_csv("/tmp/evil.csv"))
        attempt("write polars to /job", lambda: pl.DataFrame({"a": [1]}).write_csv("/job/evil.csv"))
        attempt("savefig outside out", lambda: plt.figure().savefig("/tmp/evil.png"))
        attempt("output name escapes", lambda: sdk.output("../evil.csv"))
        attempt("output hidden name", lambda: sdk.output(".bashrc"))
        attempt("output bad type", lambda: pd.DataFrame({"a": [1]}).to_csv(sdk.output("evil.py")))
        attempt("numpy savetxt outside", lambda: np.savetxt("/tmp/x.txt", np.zeros(2)))
    """) + REPORT, env.grant())
    got = results_of(job)
    assert len(got) == 23
    all_blocked(got)
    assert job.outputs == [] and job.queries == []


def test_sdk_cannot_be_poisoned(env: Env) -> None:
    """Replacing SDK functions or changing SDK objects is refused; queries after the attempts
    are the ones the script wrote, and the broker checks each anyway."""
    job = env.run(GUARDED_PROBE + textwrap.dedent("""
        def fake(*args, **kwargs):
            return "poisoned"
        farmers = sdk.dataset("farmers")
        agg = sdk.count()
        def set_count():
            sdk.count = fake
        def set_dataset():
            setattr(sdk, "dataset", fake)
        def del_mean():
            del sdk.mean
        def set_class_method():
            sdk.Dataset.agg = fake
        def set_dataset_name():
            farmers.name = "loan_defaults"
        def set_aggregate():
            agg.column = "name"
        def set_pandas():
            pd.DataFrame = fake
        def set_json():
            json.dumps = fake
        def set_numpy():
            np.mean = fake
        attempt("replace sdk.count", set_count)
        attempt("replace sdk.dataset", set_dataset)
        attempt("delete sdk.mean", del_mean)
        attempt("patch the Dataset class", set_class_method)
        attempt("rename a dataset object", set_dataset_name)
        attempt("change an aggregate", set_aggregate)
        attempt("replace pandas.DataFrame", set_pandas)
        attempt("replace json.dumps", set_json)
        attempt("replace numpy.mean", set_numpy)
        answer = farmers.agg(n=sdk.count(), epsilon=0.2)
        results["answer_is_a_frame"] = str(list(answer.columns))
    """) + REPORT, env.grant())
    got = results_of(job)
    assert got.pop("answer_is_a_frame") == "['n', 'n_ci_low', 'n_ci_high']"
    assert len(got) == 9
    all_blocked(got)
    assert [q["dataset"] for q in job.queries] == ["farmers"]
    assert [a["op"] for a in job.queries[0]["query"]["aggregates"]] == ["count"]

    # The poisoning names an attribute the static check knows is not the SDK's: refused at submit.
    refused = env.submit("from sandbox import sdk\nsdk.client = None\n", env.grant())
    assert refused["state"] == "refused" and refused["violations"][0]["rule"] == "attribute-not-allowed"


def test_infinite_loop_is_stopped_at_the_time_limit(env: Env) -> None:
    worker = Worker(env.services, runner=env.runner, image=env.image, limits=Limits(timeout_s=3), pool_size=0)
    started = time.monotonic()
    job = env.run("x = 0\nwhile True:\n    x += 1\n", env.grant(), worker=worker)
    assert job.state == "failed" and "time limit" in job.reason
    assert job.resources["runner_state"] == "timed_out" and 3 <= job.resources["duration_s"] < 15
    assert time.monotonic() - started < 30
    assert env.runner.labelled(f"sandbox.job={job.id}") == []


def test_memory_bomb_is_stopped(env: Env) -> None:
    worker = Worker(env.services, runner=env.runner, image=env.image, pool_size=0,
                    limits=Limits(memory_mb=192, tmpfs_mb=16, timeout_s=30))
    job = env.run("chunks = []\nwhile True:\n    chunks.append('x' * 10000000)\n", env.grant(), worker=worker)
    assert job.state == "failed"
    assert "memory" in job.reason or "MemoryError" in job.stderr, (job.reason, job.stderr)


def test_huge_stdout_is_capped(env: Env) -> None:
    worker = Worker(env.services, runner=env.runner, image=env.image, pool_size=0,
                    limits=Limits(stdout_bytes=50_000, timeout_s=30))
    job = env.run("for i in range(20000):\n    print('y' * 200)\n", env.grant(), worker=worker)
    assert job.state == "succeeded"
    assert len(job.stdout) == 50_000 and job.resources["stdout_truncated"] is True


def test_disk_fill_through_outputs_is_capped(env: Env) -> None:
    limits = Limits(fsize_mb=2, output_bytes=3_000_000, output_files=4, timeout_s=40)
    worker = Worker(env.services, runner=env.runner, image=env.image, pool_size=0, limits=limits)
    job = env.run(GUARDED_PROBE + textwrap.dedent("""
        big = pd.DataFrame({"a": np.arange(400000)})
        for i in range(8):
            attempt("file " + str(i), lambda: big.to_csv(sdk.output("part" + str(i) + ".csv")))
    """) + REPORT, env.grant(), worker=worker)
    out = env.home.jobs / job.id / "out"
    kept = sorted(out.iterdir()) if out.exists() else []
    assert sum(p.stat().st_size for p in kept) <= limits.output_bytes
    assert len(kept) <= limits.output_files and all(p.stat().st_size <= 2 * 2**20 for p in kept)
    assert job.resources["refused_outputs"], job.resources  # too large / too many: refused, not copied
    assert [o["name"] for o in job.outputs] == [p.name for p in kept]


# -- layer 3: the container on its own (check and harness bypassed) ---------------------------

CONTAINER_PROBE = textwrap.dedent("""
    import json, os, socket, sys
    results = {}
    def attempt(name, fn):
        try:
            fn()
            results[name] = "ALLOWED"
        except Exception as exc:
            results[name] = "BLOCKED " + type(exc).__name__ + ": " + str(exc)[:100]
""")


@pytest.fixture
def raw_worker(env: Env) -> Worker:
    return Worker(env.services, runner=env.runner, image=env.image, limits=LIMITS, pool_size=0, command=RAW)


def test_container_holds_no_data_and_no_way_out(env: Env, raw_worker: Worker) -> None:
    job_id = env.insert_queued(CONTAINER_PROBE + textwrap.dedent(f"""
        attempt("tcp egress", lambda: socket.create_connection(("1.1.1.1", 53), timeout=3))
        attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
        import sandbox.sdk
        sdk_file = sandbox.sdk.__file__
        for path in ["/etc/evil", "/job/evil", "/job/script.py", "/usr/evil", sdk_file]:
            attempt("write " + path, lambda: open(path, "a").write("poison"))
        attempt("setuid 0", lambda: os.setuid(0))
        attempt("chroot", lambda: os.chroot("/tmp"))
        status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
        results["CapEff"] = status["CapEff"].strip()
        canary = bytes.fromhex({CANARY.encode().hex()!r})  # not written out: the script is stored too
        found, names, scanned = [], [], 0
        for top in ["/"]:
            for root, dirs, files in os.walk(top):
                if root.startswith(("/proc", "/sys", "/dev")):
                    dirs[:] = []
                    continue
                for f in files:
                    p = os.path.join(root, f)
                    if f.endswith((".sbx", ".parquet", ".key", ".db")) or "vault" in p:
                        names.append(p)
                    try:
                        if os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) > 4_000_000:
                            continue
                        if p.startswith(("/usr", "/opt")) and not p.endswith((".csv", ".txt", ".json")):
                            continue
                        with open(p, "rb") as fh:
                            scanned += 1
                            if canary in fh.read():
                                found.append(p)
                    except OSError:
                        pass
        results["canary_files"] = found
        results["data_files"] = names
        results["scanned"] = scanned
        results["job_dir"] = sorted(os.listdir("/job"))
        results["env"] = sorted(os.environ)
    """) + "\nprint('RESULTS ' + json.dumps(results))\n", env.grant())
    raw_worker.run_next(job_id)
    job = env.services.jobs.get(job_id)
    got = results_of(job)
    assert got.pop("canary_files") == [] and got.pop("scanned") > 100
    assert got.pop("data_files") == []
    assert got.pop("job_dir") == ["broker.sock", "out", "script.py"]
    assert not any("KEY" in k or "SECRET" in k or "DATABASE" in k for k in got.pop("env"))
    assert got.pop("CapEff") == "0000000000000000"
    all_blocked(got)


def test_fork_bomb_is_held_by_the_container(env: Env) -> None:
    worker = Worker(env.services, runner=env.runner, image=env.image, pool_size=0, command=RAW,
                    limits=Limits(pids=32, timeout_s=30))
    job_id = env.insert_queued(textwrap.dedent("""
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60); os._exit(0)
                n += 1
        except OSError as exc:
            print("forked", n, exc.errno)
    """), env.grant())
    worker.run_next(job_id)
    job = env.services.jobs.get(job_id)
    assert job.state == "succeeded", job.stderr
    _, forked, errno = job.stdout.split()
    assert int(forked) < 32 and int(errno) == 11


def _raw_query_script(requests: list[dict]) -> str:
    return textwrap.dedent(f"""
        import json, socket
        s = socket.socket(socket.AF_UNIX)
        s.connect("/job/broker.sock")
        f = s.makefile("rwb")
        answers = []
        for i, req in enumerate({requests!r}):
            f.write((json.dumps({{"id": i, **req}}) + "\\n").encode()); f.flush()
            answers.append(json.loads(f.readline()))
        print("RESULTS " + json.dumps(answers))
    """)


def test_raw_json_to_the_broker_is_held_to_the_grant(env: Env, raw_worker: Worker) -> None:
    grant = env.grant(epsilon=0.3, datasets=("farmers", "loan_defaults"))
    farmers = dataset("farmers")
    requests = [
        {"method": "query", "params": dataset("loan_defaults").query(n=count(), epsilon=0.1)},  # not in this job
        {"method": "query", "params": farmers.groupby("name").query(n=count(), epsilon=0.1)},  # identifier
        {"method": "query", "params": farmers.query(x=mean("name"), epsilon=0.1)},  # identifier
        {"method": "query", "params": farmers.query(n=count(), epsilon=0.2)},  # fits: 0.1 left after
        {"method": "query", "params": farmers.query(n=count(), epsilon=0.25)},  # more than is left
        {"method": "query", "params": dataset("utility_payments").query(n=count(), epsilon=0.1)},  # no grant
        {"method": "describe", "params": {"dataset": "loan_defaults"}},
        {"method": "eval", "params": {"code": "open('/etc/passwd').read()"}},
        {"method": "query", "params": {"dataset": "farmers", "kind": "rows", "columns": ["name"]}},
    ]
    job_id = env.insert_queued(_raw_query_script(requests), grant)  # the job covers farmers only
    raw_worker.run_next(job_id)
    job = env.services.jobs.get(job_id)
    answers = results_of(job)
    codes = [a.get("error", {}).get("code") if "error" in a else "ok" for a in answers]
    assert codes == ["policy_refused", "policy_refused", "policy_refused", "ok", "budget_exceeded",
                     "policy_refused", "policy_refused", "unknown_method", "query_invalid"], answers
    assert "Traceback" not in job.stdout
    left = {b["dataset"]: b["epsilon_left"] for b in env.services.grants.get(grant)["budgets"]}
    assert left == {"farmers": pytest.approx(0.1), "loan_defaults": pytest.approx(0.3)}
    refusals = [e for e in env.services.audit.entries(action="query.refused", grant_id=grant)]
    assert len(refusals) >= 5, [(e["outcome"], e["details"]) for e in refusals]
    assert {e["outcome"] for e in refusals} >= {"policy_refused", "budget_exceeded"}
    assert all(e["objects"]["job"] == job_id for e in refusals)
    assert [q["epsilon"] for q in job.queries] == [0.2]


def test_a_job_cannot_reach_another_jobs_socket(env: Env, raw_worker: Worker) -> None:
    grant = env.grant()
    other = env.submit("from sandbox import sdk\nx = 0\nwhile True:\n    x += 1\n", grant)
    other_worker = Worker(env.services, runner=env.runner, image=env.image, limits=LIMITS, pool_size=0)
    thread = threading.Thread(target=other_worker.run_next, args=(other["id"],))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        other_socket = env.runner.root / "jobs" / runner_workspace.safe_key(other["id"]) / "job" / "broker.sock"
        while not other_socket.exists():
            assert time.monotonic() < deadline, "the other job never started"
            time.sleep(0.05)
        job_id = env.insert_queued(CONTAINER_PROBE + textwrap.dedent(f"""
            def connect(path):
                s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(path)
            attempt("host path of the other socket", lambda: connect({str(other_socket)!r}))
            attempt("other socket by its job folder", lambda: connect("/job/../{other['id']}/broker.sock"))
            socks = []
            for root, dirs, files in os.walk("/"):
                if root.startswith(("/proc", "/sys")):
                    dirs[:] = []
                    continue
                socks += [os.path.join(root, f) for f in files if f.endswith(".sock")]
            results["sockets"] = socks
            def abstract():
                s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect("\\0broker")
            attempt("abstract socket", abstract)
        """) + "\nprint('RESULTS ' + json.dumps(results))\n", grant)
        raw_worker.run_next(job_id)
    finally:
        env.services.jobs.cancel(env.services.actor, other["id"])
        thread.join(60)
    got = results_of(env.services.jobs.get(job_id))
    assert got.pop("sockets") == ["/job/broker.sock"]
    all_blocked(got)
    assert env.services.jobs.get(other["id"]).state == "cancelled"
