"""Job limits, the script import allow-list and compute fees come from policy files, not code."""
from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import InvalidInput, PolicyInvalid
from sandbox.runtime_policy import load_runtime_policy

from .conftest import ANALYST, World


def test_repository_policy_loads() -> None:
    policy = load_runtime_policy()
    assert policy.limits.tmpfs_mb < policy.limits.memory_mb
    assert "sandbox.sdk" in policy.allowed_imports and policy.pool_size >= 0


def _home_policy(tmp_path: Path, text: str) -> Path:
    (tmp_path / "runtime.yaml").write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("text, words", [
    ("job_limits: {memory_mb: 64, tmpfs_mb: 128}\n", "tmpfs_mb below memory_mb"),
    ("job_limits: {memry_mb: 64}\n", "unknown setting job_limits.memry_mb"),
    ("script: {allowed_imports: [os]}\n", "no vetted proxy for: os"),
    ("pool: 3\n", "unknown setting pool"),
    ("job_limits: [1, 2\n", "cannot read the runtime policy"),
])
def test_bad_runtime_policy_is_refused_clearly(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(PolicyInvalid) as err:
        load_runtime_policy(_home_policy(tmp_path, text))
    assert words in str(err.value) and err.value.hint


def test_home_policy_narrows_imports_and_script_size(world: World, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    narrow = load_runtime_policy(_home_policy(
        tmp_path, "script: {max_bytes: 200, allowed_imports: [sandbox.sdk, math]}\n"))
    monkeypatch.setattr(world.services.jobs, "runtime", narrow)
    job = world.services.jobs.submit(ANALYST, "a.py", "import numpy\nfrom sandbox import sdk\n",
                                     mock_datasets=["farmers"])
    assert job["state"] == "refused"
    assert job["violations"][0]["line"] == 1 and job["violations"][0]["rule"] == "import-not-allowed"
    with pytest.raises(InvalidInput, match="larger than 0 KiB"):
        world.services.jobs.submit(ANALYST, "b.py", "x = 1\n" * 100, mock_datasets=["farmers"])


def test_commercial_job_pays_for_compute_time(world: World) -> None:
    gid = world.grant(user_type="commercial")
    job = world.services.jobs.submit(ANALYST, "c.py", "from sandbox import sdk\n", grant_id=gid)
    world.services.jobs.claim("worker-test", job["id"])
    world.services.jobs.finish(job["id"], "succeeded", resources={"duration_s": 10.0})
    world.services.jobs.finish(job["id"], "succeeded", resources={"duration_s": 10.0})  # retried finalize
    compute = [f for f in world.services.pricing.fees(gid) if f["kind"] == "compute"]
    assert [(f["job_id"], f["amount"]) for f in compute] == [(job["id"], "0.20")]  # 10 s x 0.02
