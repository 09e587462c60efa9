"""Worker configuration that needs no containers: runner folders per installation, mock previews."""
from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.home import Home
from sandbox.jobs import worker

from .conftest import World


def test_each_installation_gets_its_own_runner_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "RUNNER_BASE", tmp_path / "runners")
    monkeypatch.delenv("SANDBOX_RUNNER_ROOT", raising=False)
    monkeypatch.delenv("SANDBOX_RUNNER", raising=False)
    one = worker.default_runner(Home(tmp_path / "home-one"))
    two = worker.default_runner(Home(tmp_path / "home-two"))
    again = worker.default_runner(Home(tmp_path / "home-one"))
    assert one.root != two.root and one.root == again.root  # type: ignore[attr-defined]
    assert one.root.parent == tmp_path / "runners"  # type: ignore[attr-defined]
    monkeypatch.setenv("SANDBOX_RUNNER_ROOT", str(tmp_path / "chosen"))
    assert worker.default_runner(Home(tmp_path / "home-one")).root == tmp_path / "chosen"  # type: ignore[attr-defined]


def test_mock_preview_costs_from_the_policy_alone(world: World) -> None:
    doc = {"dataset": "farmers", "group_by": ["county"], "epsilon": 0.5,
           "aggregates": [{"name": "n", "op": "count"}, {"name": "m", "op": "mean", "column": "income_yuan"}]}
    preview = world.broker.preview_mock(doc)
    assert preview["epsilon"] == 0.5 and preview["mock"] is True and preview["budget_left"] is None
    assert {"count:", "sum:income_yuan"} <= set(preview["accuracy"])
    assert all(a["ci95_half_width"] > 0 for a in preview["accuracy"].values())
