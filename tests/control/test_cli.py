"""The ``sandbox`` CLI as a new user meets it: the installed entry point in a subprocess for the
happy path, click's CliRunner (same code, no interpreter start-up) for the many error cases."""
from __future__ import annotations

import csv
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from sandbox.policy import read_policy_file

from .conftest import (
    ANALYST, CANARY, FARM, World, assert_clean_error, cli_env, run_cli,
)

QUERY = {"dataset": "farmers", "group_by": ["crop"], "epsilon": 0.5,
         "aggregates": [{"name": "n", "op": "count"},
                        {"name": "median_income", "op": "quantile", "column": "income_yuan", "q": 0.5}]}


def _write(path: Path, doc) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


# -- the happy path, through the real entry point --------------------------------------------


def test_a_new_users_session(tmp_path: Path, demo_csvs: dict[str, Path]) -> None:
    home = tmp_path / "home"
    env = cli_env(home)

    out = run_cli(env, "init").stdout
    assert f"initialised sandbox home at {home}" in out
    for key in ("master.key", "audit-signing.key"):
        assert stat.S_IMODE((home / "keys" / key).stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    again = run_cli(env, "init", check=False)
    assert again.returncode != 0
    assert_clean_error(again.stderr)
    assert "already exists" in again.stderr

    out = run_cli(env, "--user", "agri-bureau", "--role", "provider", "dataset", "add",
                  str(demo_csvs["farmers"]), "--name", "farmers", "--policy", str(FARM)).stdout
    assert out.startswith("added dataset farmers version ")
    dup = run_cli(env, "dataset", "add", str(demo_csvs["farmers"]), "--name", "farmers",
                  "--policy", str(FARM), check=False)
    assert dup.returncode != 0 and dup.stdout == ""
    assert_clean_error(dup.stderr)
    assert "already in the catalog" in dup.stderr and "--replace" in dup.stderr

    listing = run_cli(env, "dataset", "list").stdout
    assert "farmers" in listing and "conditional" in listing
    shown = run_cli(env, "dataset", "show", "farmers").stdout
    assert "income_yuan" in shown and "identifier" in shown and "sensitive" in shown
    mock = tmp_path / "mock.csv"
    assert "MOCK" in run_cli(env, "dataset", "mock", "farmers", "--rows", "50", "-o", str(mock)).stdout
    with mock.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    policy_columns = [c["name"] for c in json.loads(run_cli(env, "--json", "dataset", "show", "farmers").stdout)["columns"]]
    assert rows[0] == policy_columns and len(rows) == 51
    assert CANARY not in mock.read_text(encoding="utf-8")

    made = json.loads(run_cli(env, "--json", "grant", "create", "--analyst", "alice", "--dataset", "farmers",
                              "--epsilon", "2", "--purpose", "credit scoring").stdout)
    gid = made["id"]
    assert made["status"] == "active"

    qfile = _write(tmp_path / "q.json", QUERY)
    analyst = cli_env(home, "alice", "analyst")
    preview = run_cli(analyst, "query", str(qfile), "--grant", gid, "--preview").stdout
    assert "would cost epsilon 0.5" in preview and "budget left epsilon 2" in preview
    out = run_cli(analyst, "query", str(qfile), "--grant", gid).stdout
    header = out.splitlines()[0].split()
    assert header == ["crop", "n", "n_ci_low", "n_ci_high", "median_income", "median_income_ci_low",
                      "median_income_ci_high"]
    assert "charged: epsilon 0.5" in out and "budget left: epsilon 1.5" in out
    budget = run_cli(analyst, "budget", "--grant", gid).stdout
    assert budget.splitlines()[1].split() == ["farmers", "2", "0.5", "1.5", "1e-07"]

    verify = run_cli(env, "audit", "verify").stdout
    assert verify.startswith("audit verify: OK")
    last = run_cli(env, "audit", "show", "--last", "5").stdout.splitlines()
    assert len(last) == 6 and "query.released" in "\n".join(last)
    export = tmp_path / "export"
    assert "exported" in run_cli(env, "audit", "export", str(export)).stdout
    assert sorted(p.name for p in export.iterdir()) == ["audit-signing.pub", "checkpoints.jsonl", "entries.jsonl"]
    assert CANARY not in (export / "entries.jsonl").read_text(encoding="utf-8")

    with sqlite3.connect(home / "sandbox.db") as db:  # a forger edits who ran the query
        seq = db.execute("SELECT seq FROM audit_entries WHERE action = 'query.charged'").fetchone()[0]
        db.execute("UPDATE audit_entries SET actor = 'mallory' WHERE seq = ?", (seq,))
    tampered = run_cli(env, "audit", "verify", check=False)
    assert tampered.returncode == 1
    assert "FAILED" in tampered.stdout and f"entry {seq}: edited" in tampered.stdout


# -- grants, queries and budgets in-process ----------------------------------------------------


def test_grant_lifecycle(world: World) -> None:
    r = world.cli("--json", "grant", "create", "--analyst", "bob", "--dataset", "farmers",
                  "--dataset", "loan_defaults", "--days", "10", "--purpose", "default risk")
    assert r.exit_code == 0, r.output
    gid = json.loads(r.stdout)["id"]
    listing = world.cli("grant", "list", "--analyst", "bob").stdout
    assert gid in listing and "farmers,loan_defaults" in listing and "active" in listing
    shown = world.cli("grant", "show", gid).stdout
    assert "status: active" in shown and "loan_defaults  2" in shown  # each policy's default budget
    ext = world.cli("grant", "extend", gid, "--days", "5")
    assert ext.exit_code == 0 and "now expires" in ext.stdout
    rev = world.cli("grant", "revoke", gid, "--reason", "study ended")
    assert rev.exit_code == 0 and "revoked" in rev.stdout
    assert "revoked" in world.cli("grant", "show", gid).stdout
    again = world.cli("grant", "extend", gid, "--days", "5")
    assert again.exit_code == 1
    assert_clean_error(again.stderr)
    actions = [e.action for e in world.entries(gid)]
    assert actions == ["grant.created", "grant.extended", "grant.revoked"]


def test_query_cached_and_json(world: World, tmp_path: Path) -> None:
    gid = world.grant(epsilon=1.0)
    qfile = _write(tmp_path / "q.json", QUERY)
    first = world.cli("query", str(qfile), "--grant", gid, actor=ANALYST)
    assert first.exit_code == 0 and "charged: epsilon 0.5" in first.stdout
    second = world.cli("--json", "query", str(qfile), "--grant", gid, actor=ANALYST)
    answer = json.loads(second.stdout)
    assert answer["cached"] is True and answer["epsilon_charged"] == 0.0
    assert world.cli("query", str(qfile), "--grant", gid, actor=ANALYST).stdout.count("free (answered before)") == 1
    budget = json.loads(world.cli("--json", "budget", "--grant", gid).stdout)
    assert budget[0]["epsilon_spent"] == 0.5


def test_expired_grant_can_be_extended(world: World) -> None:
    from datetime import datetime, timedelta, timezone

    from sandbox import grants

    gid = world.grant()
    with world.services.db.transaction() as s:
        s.get(grants.Grant, gid).expires_at = datetime.now(timezone.utc) - timedelta(days=2)
    r = world.cli("--json", "grant", "extend", gid, "--days", "7")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["status"] == "active"
    assert datetime.fromisoformat(info["expires_at"]) > datetime.now(timezone.utc) + timedelta(days=6)


# -- every error: `error:` first, a `what to do:` line, no traceback, non-zero exit -----------


def _fails(world: World, *args: str, words: str, code: int = 1) -> str:
    r = world.cli(*args)
    assert r.exit_code == code, (r.exit_code, r.output)
    assert r.stdout == "", r.stdout
    assert_clean_error(r.stderr)
    assert words in r.stderr, r.stderr
    return r.stderr


def test_query_errors(world: World, tmp_path: Path) -> None:
    gid = world.grant(epsilon=0.5)
    good = _write(tmp_path / "q.json", QUERY)
    _fails(world, "query", str(tmp_path / "missing.json"), "--grant", gid, words="no query file")
    broken = _write(tmp_path / "broken.json", '{"dataset": "farmers",\n  "epsilon": }')
    _fails(world, "query", str(broken), "--grant", gid, words="not valid JSON (line 2)")
    nan = _write(tmp_path / "nan.json", '{"dataset": "farmers", "epsilon": NaN, "aggregates": [{"name": "n", "op": "count"}]}')
    _fails(world, "query", str(nan), "--grant", gid, words="epsilon")
    big = _write(tmp_path / "big.json", {**QUERY, "epsilon": 1.5})
    _fails(world, "query", str(big), "--grant", gid, words="maximum per query")
    _fails(world, "query", str(good), "--grant", "g-nosuch", words="no grant g-nosuch")
    ident = _write(tmp_path / "id.json", {"dataset": "farmers", "epsilon": 0.1, "group_by": ["name"],
                                          "aggregates": [{"name": "n", "op": "count"}]})
    _fails(world, "query", str(ident), "--grant", gid, words="identifier")
    assert world.cli("query", str(good), "--grant", gid).exit_code == 0
    _fails(world, "query", str(_write(tmp_path / "q2.json", {**QUERY, "epsilon": 0.2})), "--grant", gid,
           words="left on farmers")
    _fails(world, "query", str(good), "--grant", gid, "--preview", "--json", words="No such option", code=2)


def test_dataset_errors(world: World, tmp_path: Path, demo_csvs: dict[str, Path]) -> None:
    _fails(world, "dataset", "add", str(demo_csvs["farmers"]), "--name", "farmers", "--policy", str(FARM),
           words="already in the catalog")
    _fails(world, "dataset", "add", str(tmp_path / "none.csv"), "--name", "x", "--policy", str(FARM),
           words="declares no dataset")
    _fails(world, "dataset", "show", "nosuch", words="no dataset named")
    _fails(world, "dataset", "mock", "nosuch", "-o", str(tmp_path / "m.csv"), words="no dataset named")
    _fails(world, "dataset", "mock", "farmers", "-o", str(tmp_path / "no" / "such" / "m.csv"),
           words="cannot use the file or folder")
    text, _ = read_policy_file(FARM)
    bad = tmp_path / "bad.yaml"
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "max_epsilon_per_query: 1.0" in line)
    lines[at] = lines[at].replace("1.0", "lots")
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = _fails(world, "dataset", "add", str(demo_csvs["farmers"]), "--name", "farmers2", "--policy", str(bad),
                 words="max_epsilon_per_query")
    assert f":{at + 1}:" in err  # names the line


def test_grant_errors(world: World) -> None:
    _fails(world, "grant", "show", "g-nosuch", words="no grant g-nosuch")
    _fails(world, "grant", "revoke", "g-nosuch", "--reason", "x", words="no grant g-nosuch")
    _fails(world, "grant", "create", "--analyst", "a", "--dataset", "nosuch", "--purpose", "p", words="no dataset named")
    _fails(world, "grant", "create", "--analyst", "a", "--dataset", "farmers", "--purpose", "p",
           "--columns", "name", words="identifier")
    _fails(world, "grant", "create", "--analyst", "a", "--dataset", "farmers", "--purpose", " ",
           words="needs a purpose")
    _fails(world, "grant", "create", "--analyst", "a", "--dataset", "farmers", "--purpose", "p",
           "--epsilon", "0", words="must be a positive number")
    for value in ("nan", "inf", "-1"):
        _fails(world, "grant", "create", "--analyst", "a", "--dataset", "farmers", "--purpose", "p",
               "--epsilon", value, words="epsilon")
    _fails(world, "grant", "create", "--analyst", "a", "--dataset", "farmers", "--dataset", "farmers",
           "--purpose", "p", words="farmers")
    _fails(world, "grant", "create", "--analyst", "a", "--dataset", "farmers", "--purpose", "p",
           "--operations", "count,regression", words="regression")
    _fails(world, "grant", "create", "--analyst", "a", "--dataset", "farmers", "--purpose", "p",
           "--days", "0", words="at least one day")
    gid = world.grant()
    world.cli("grant", "revoke", gid, "--reason", "first")
    _fails(world, "grant", "revoke", gid, "--reason", "second", words="already revoked")
    assert [e.action for e in world.entries(gid)].count("grant.revoked") == 1
    _fails(world, "budget", "--grant", "g-nosuch", words="no grant g-nosuch")


def test_usage_errors_are_clean(world: World) -> None:
    _fails(world, "grant", "create", "--analyst", "a", words="--dataset", code=2)
    _fails(world, "nosuchcommand", words="nosuchcommand", code=2)


def test_not_initialised(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sandbox.cli import main

    r = CliRunner().invoke(main, ["--home", str(tmp_path / "nothing"), "dataset", "list"])
    assert r.exit_code == 1
    assert_clean_error(r.stderr)
    assert "sandbox init" in r.stderr


def test_unexpected_failure_is_one_clean_line(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError(f"internal detail {CANARY}")

    monkeypatch.setattr(type(world.services.catalog), "names", boom)
    err = _fails(world, "dataset", "list", words="failed unexpectedly", code=70)
    assert "sandbox.log" in err


def test_audit_commands(world: World, tmp_path: Path) -> None:
    r = world.cli("audit", "verify")
    assert r.exit_code == 0 and r.stdout.startswith("audit verify: OK")
    shown = world.cli("audit", "show", "--last", "5")
    assert shown.exit_code == 0 and len(shown.stdout.splitlines()) == 6
    exp = world.cli("audit", "export", str(tmp_path / "exp"))
    assert exp.exit_code == 0
    _fails(world, "audit", "export", str(tmp_path / "exp"), words="would overwrite")


# -- what a new user met: output for pipes and terminals, jobs, hints, errors as JSON ----------


def _finished_job(world: World, owner: str, grant_id: str, script: str = "print('DP result')\n") -> str:
    """A job as the worker leaves it (without a container): queries charged, one output file."""
    import hashlib

    from sandbox.actors import Actor

    job_id = world.services.jobs.submit(Actor(owner, "analyst"), "analysis.py", script, grant_id=grant_id)["id"]
    world.services.jobs.claim("test-worker", job_id)
    out = world.root / "jobs" / job_id / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.csv").write_bytes(b"crop,score\nwheat,1\n")
    asked = {**QUERY, "epsilon": 0.2}
    world.services.jobs.finish(
        job_id, "succeeded", exit_code=0, stdout="DP result: 42\n",
        outputs=[{"name": "scores.csv", "size": 20, "sha256": hashlib.sha256(b"crop,score\nwheat,1\n").hexdigest()}],
        queries=[{"dataset": "farmers", "query": asked, "epsilon": 0.2, "cached": False},
                 {"dataset": "farmers", "query": asked, "epsilon": 0.0, "cached": True}])
    return job_id


def test_token_create_prints_only_the_token_on_stdout(world: World) -> None:
    assert world.cli("user", "add", "tina", "--role", "analyst").exit_code == 0
    r = world.cli("token", "create", "tina")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("sbx_")  # $(sandbox token create tina) is the token
    assert "shown once" in r.stderr and "shown once" not in r.stdout
    made = json.loads(world.cli("--json", "token", "create", "tina").stdout)
    assert made["token"].startswith("sbx_") and made["user"] == "tina"


def test_client_refuses_a_url_without_scheme_and_a_token_with_line_breaks() -> None:
    from sandbox.client import Client
    from sandbox.errors import InvalidInput

    with pytest.raises(InvalidInput, match="needs http:// or https://"):
        Client("127.0.0.1:8750")
    with pytest.raises(InvalidInput, match="contains characters a token cannot have; pass only the token itself"):
        Client("http://127.0.0.1:8750", "sbx_abc\n\nwarning: this token is shown once")
    assert Client("https://sandbox.example/", "sbx_abc_DEF-1").base == "https://sandbox.example"


def test_cli_server_url_and_token_errors(world: World) -> None:
    r = world.cli("--server", "127.0.0.1:8750", "dataset", "list")
    assert r.exit_code == 1 and "the server URL needs http:// or https://" in r.stderr
    assert_clean_error(r.stderr)
    r = world.cli("--server", "http://127.0.0.1:8750", "--token", "sbx_a\nb", "dataset", "list")
    assert r.exit_code == 1 and "pass only the token itself" in r.stderr and "cannot reach" not in r.stderr


def test_role_must_be_a_known_role(world: World) -> None:
    from click.testing import CliRunner

    from sandbox.cli import main

    r = CliRunner().invoke(main, ["--home", str(world.root), "--role", "wizard", "dataset", "list"])
    assert r.exit_code == 2 and r.stdout == ""
    assert_clean_error(r.stderr)
    assert "'wizard' is not one of" in r.stderr and "analyst" in r.stderr


def test_init_makes_the_database_file_0600(tmp_path: Path) -> None:
    import os

    from sandbox.home import Home
    from sandbox.services import Services

    from .conftest import OPERATOR as olga

    if os.environ.get("SANDBOX_DATABASE_URL"):
        pytest.skip("the database is not a SQLite file of the home")
    home = Home(tmp_path / "home")
    services = Services.init(home, olga)
    try:
        files = sorted(home.root.glob("sandbox.db*"))
        assert home.root / "sandbox.db" in files
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    finally:
        services.close()


def test_json_errors_are_json_on_stderr(world: World) -> None:
    r = world.cli("--json", "dataset", "show", "nosuch")
    assert r.exit_code == 1 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "not_found" and "nosuch" in err["message"] and "dataset list" in err["hint"]
    r = world.cli("--json", "nosuchcommand")
    assert r.exit_code == 2 and json.loads(r.stderr)["error"]["code"] == "usage"
    r = world.cli("--json", "--server", "localhost:1", "job", "list")
    assert r.exit_code == 1 and "http://" in json.loads(r.stderr)["error"]["message"]


def test_render_answer_one_number_rule() -> None:
    from sandbox.cli.data import render_answer

    answer = {"columns": ["crop", "bin", "n", "n_ci_low", "n_ci_high", "income", "income_ci_low", "income_ci_high"],
              "rows": [["wheat", None, 6059, 6040.55, 6077.45, 6034.5, 5900.123, 6100.0],
                       ["maize", None, 412, 0.0, 430.2, None, None, None]],
              "suppressed_groups": 2, "suppressed_bins": 3, "mechanism": {"min_release_count": 20},
              "epsilon_charged": 0.5, "budget_left": {"epsilon": 1.5}}
    lines = render_answer(answer).splitlines()
    assert lines[1].split() == ["wheat", "6,059", "6,040", "6,078", "6,034.50", "5,900.12", "6,100.00"]
    assert lines[2].split() == ["maize", "412", "0", "431"]  # no `None`: empty cells
    assert "None" not in "\n".join(lines)
    assert "2 group(s) suppressed (not released): noisy count below the policy's minimum of 20" in lines
    assert "3 histogram bin(s) suppressed (not released): noisy count below the policy's minimum of 20" in lines


def test_preview_shows_accuracy(world: World, tmp_path: Path) -> None:
    gid = world.grant(epsilon=1.0)
    qfile = _write(tmp_path / "q.json", QUERY)
    out = world.cli("query", str(qfile), "--grant", gid, "--preview", actor=ANALYST).stdout
    assert "would cost epsilon 0.5" in out and "accuracy" in out
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    assert "count" in rows and "±" in rows["count"]
    assert "quantile 0.5 of income_yuan" in rows and "grid step" in rows["quantile 0.5 of income_yuan"]


def test_every_command_has_help() -> None:
    import click

    from sandbox.cli import main

    def missing(cmd: click.Command, path: str) -> list[str]:
        found = [] if (cmd.help or "").strip() else [path]
        for name, sub in getattr(cmd, "commands", {}).items():
            found += missing(sub, f"{path} {name}")
        return found

    assert missing(main, "sandbox") == []


def test_job_commands_on_a_home(world: World, tmp_path: Path) -> None:
    gid = world.grant(epsilon=1.0)
    job_id = _finished_job(world, ANALYST.name, gid)
    status = world.cli("job", "status", job_id, actor=ANALYST).stdout
    assert "queries (2):" in status
    assert "farmers  0.2              n, median_income by crop" in status
    assert "farmers  0        yes     n, median_income by crop" in status
    results = world.cli("job", "results", job_id, actor=ANALYST).stdout
    assert "DP result: 42" in results and "n, median_income by crop" in results and "job download" not in results

    script = world.cli("job", "script", job_id)
    assert script.exit_code == 0
    assert "(matches the text below)" in script.stdout and script.stdout.rstrip().endswith("print('DP result')")
    assert json.loads(world.cli("--json", "job", "script", job_id).stdout)["script"] == "print('DP result')\n"

    out = tmp_path / "dl"
    done = world.cli("job", "download", job_id, "-o", str(out))
    assert done.exit_code == 0 and "wrote" in done.stdout
    assert (out / "scores.csv").read_bytes() == b"crop,score\nwheat,1\n"
    _fails(world, "job", "download", job_id, "-o", str(out), words="would overwrite")
    _fails(world, "job", "download", job_id, "--name", "nosuch.csv", "-o", str(tmp_path / "x"),
           words="no output named 'nosuch.csv'")

    script_file = _write(tmp_path / "a.py", "print(1)\n")
    queued = world.cli("submit", str(script_file), "--grant", gid, actor=ANALYST)
    assert queued.exit_code == 0 and "(a worker runs it: `sandbox worker`)" in queued.stdout
    world.cli("job", "cancel", queued.stdout.split()[0], actor=ANALYST)


def test_worker_says_where_its_log_is(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.jobs.worker as worker_module

    class Idle:
        name = "idle-worker"

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            pass

        def recover(self) -> list:
            return []

        def run_next(self):  # type: ignore[no-untyped-def]
            return None

        def close(self) -> None:
            pass

    monkeypatch.setattr(worker_module, "Worker", Idle)
    r = world.cli("worker", "--once")
    assert r.exit_code == 0, r.output
    assert str(world.root / "logs" / "sandbox.log") in r.stderr


def test_cli_against_a_server(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Remote: hints for the command line, submit's wording, job script and download through the API."""
    from tests.api.live import Server

    from .conftest import OPERATOR as olga

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no client.toml of the developer's
    world.services.users.add(olga, "rana", "analyst")
    token, _ = world.services.users.create_token(olga, "rana")
    gid = world.services.grants.create(olga, analyst="rana", datasets=["farmers"], epsilon=1.0, days=30,
                                       purpose="credit scoring research")["id"]
    job_id = _finished_job(world, "rana", gid)
    server = Server(world.root).start()
    try:
        def remote(*args: str, token_: str | None = token):  # type: ignore[no-untyped-def]
            return world.cli("--server", server.url, *(("--token", token_) if token_ else ()), *args)

        r = remote("job", "list", token_=None)
        assert r.exit_code == 1 and "set $SANDBOX_TOKEN or pass --token" in r.stderr and "Bearer" not in r.stderr
        r = remote("job", "list", token_="sbx_000000000000_nosuchtokennosuchtokennosuchtoken0000000")
        assert r.exit_code == 1 and "check $SANDBOX_TOKEN / --token" in r.stderr and "Bearer" not in r.stderr

        status = remote("job", "status", job_id)
        assert status.exit_code == 0 and "n, median_income by crop" in status.stdout
        results = remote("job", "results", job_id).stdout
        assert f"/api/v1/jobs/{job_id}/outputs/scores.csv" in results and f"sandbox job download {job_id}" in results
        script = remote("job", "script", job_id).stdout
        assert "(matches the text below)" in script and "print('DP result')" in script
        out = tmp_path / "remote-dl"
        assert remote("job", "download", job_id, "--name", "scores.csv", "-o", str(out)).exit_code == 0
        assert (out / "scores.csv").read_bytes() == b"crop,score\nwheat,1\n"

        queued = remote("submit", str(_write(tmp_path / "a.py", "print(1)\n")), "--grant", gid)
        assert queued.exit_code == 0 and "(the server's worker runs it)" in queued.stdout
        assert "sandbox worker" not in queued.stdout
        remote("job", "cancel", queued.stdout.split()[0])
    finally:
        server.stop()
    assert str(world.root / "logs" / "sandbox.log") in server.log.read_text()
