"""The benchmarks run to completion in their short mode and print their ratios.

Each bench script runs as a subprocess (``python bench/X.py --short``), on the simulator.  Nothing
here asserts a time or a ratio's value: timing belongs to the benchmarks, which print ratios
(docs/performance.md); these tests only check that the scripts work and say what they measure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SimHome

BENCH = Path(__file__).resolve().parents[2] / "bench"
RATIO = r"ratio: .+ = [+-]?\d+\.\d+x?"


def run_bench(script: str, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--short", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{out}"
    assert "latency model (s): create=15,clone=0.5,start=1.5" in out, out
    return out


def ratio_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.fullmatch(RATIO + r".*", line)]


@pytest.fixture
def sim(sim_home: SimHome) -> SimHome:
    """Skips where the simulator cannot run machines (the benches need it)."""
    return sim_home


@pytest.mark.usefixtures("sim")
def test_fresh_machines_short() -> None:
    out = run_bench("fresh_machines.py")
    assert re.search(r"pipelined bound \(-n 2\) = create .* = \d+\.\d+s", out), out
    for pattern in (
        r"ratio: baseline / ours serial \(pool auto\) = ",
        r"ratio: baseline / ours -n 2 \(pool auto\) = ",
        r"ratio: ours -n 2 \(pool auto\) / pipelined bound = ",
    ):
        assert any(re.match(pattern, line) for line in ratio_lines(out)), (pattern, out)
    assert re.search(r"orbctl calls per fresh machine, -n 2 \(pool auto\): \d+\.\d+", out), out


@pytest.mark.usefixtures("sim")
def test_warm_run_short() -> None:
    out = run_bench("warm_run.py")
    # behaviour, not time: a warm run with --orbstack-reuse creates nothing
    assert "creates per spec, -n 2: cold 1, warm 0" in out, out
    assert re.search(r"ratio: warm time to first test / .* = \d+\.\d+x", out), out


@pytest.mark.usefixtures("sim")
def test_session_overhead_short() -> None:
    out = run_bench("session_overhead.py")
    assert re.search(r"plugin added time per test \(whole run\): +[+-]\d+\.\d ms", out), out
    assert re.search(r"plugin added time per test \(steady state\): [+-]\d+\.\d ms", out), out
    assert re.search(r"orbctl invocations per test \(steady state, .*\): mean \d+\.\d+", out), out
    assert any(line.startswith("ratio: plugin / plain") for line in ratio_lines(out)), out


@pytest.mark.usefixtures("sim")
def test_xdist_scaling_short() -> None:
    out = run_bench("xdist_scaling.py")
    for suite in ("fresh", "session"):
        assert re.search(rf"ratio: {suite} -n 1 / -n 2 = \d+\.\d+x", out), out
    assert re.search(r"-n 2: +\d+\.\d+s +machines made \d+", out), out
