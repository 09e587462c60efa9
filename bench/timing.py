"""What the benchmarks share: timing a callable several times, percentiles, and the baseline
every job benchmark is a ratio against (a bare hardened ``docker run`` of the same image)."""
from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable


def measure(fn: Callable[[], object], runs: int, before: Callable[[], object] = lambda: None) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn``; ``before`` runs untimed ahead of each."""
    times = []
    for _ in range(runs):
        before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def docker_run(image: str, job_dir: Path) -> None:
    """``job_dir/main.py`` in a bare ``docker run`` with the runner's hardening: the baseline."""
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--read-only", "--user", "20999:20999",
         "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "64",
         "--memory", "512m", "--memory-swap", "512m", "--cpus", "1", "--init",
         "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,size=64m", "--ulimit", "nofile=64:64",
         "--ulimit", "core=0:0", "-v", f"{job_dir}:/job:ro", image, "python3", "/job/main.py"],
        check=True, capture_output=True)
