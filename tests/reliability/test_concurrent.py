"""Two pytest runs at once, in the same directory, as the same user, on the same simulator home
and the same registry: neither touches the other's machines, both pass, nothing is left."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.plugin.conftest import OrbEnv
from tests.reliability.conftest import (
    iterations,
    make_foreign,
    outcome_counts,
    record_soak,
    spawn_pytest,
    wait_clean,
    wait_for,
)

INNER = """
import os, time
from pathlib import Path
import pytest

OUT = Path(__file__).parent / ("names-" + os.environ["REL_RUN"])

def note(vm):
    with open(OUT, "a") as fh:
        fh.write(vm.name + "\\n")

@pytest.mark.orbstack(isolation="function")
@pytest.mark.parametrize("n", range(4))
def test_fresh(orb_vm, n):
    note(orb_vm)
    orb_vm.run(["touch", "/tmp/mine"], check=True)
    time.sleep(0.5)  # overlap with the other run's creates, deletes and reaper
    assert orb_vm.run(["test", "-e", "/tmp/mine"]).ok

@pytest.mark.parametrize("n", range(4))
def test_session(orb_vm, n):
    note(orb_vm)
    time.sleep(0.3)
    assert orb_vm.run(["hostname"]).stdout.strip() == orb_vm.name

@pytest.mark.orbstack(isolation="function", deploy="deploys/mark_deploy.py")
@pytest.mark.parametrize("n", range(2))
def test_cloned(orb_vm, n):
    note(orb_vm)
    assert orb_vm.run(["test", "-e", "/var/tmp/provisioned"]).ok
"""

DEPLOY = """
from pyinfra.operations import files
files.file(name="mark", path="/var/tmp/provisioned", present=True)
"""
INNER_TESTS = 10
SHORT = [(0, ("", "-n2"))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pair" in metafunc.fixturenames:
        soak = lambda n: [(i, (("", "-n2"), ("", ""), ("-n2", "-n2"))[i % 3]) for i in range(n)]  # noqa: E731
        metafunc.parametrize(
            "pair",
            iterations(
                metafunc.config, SHORT, soak, lambda p: f"{p[0]}-{p[1][0] or '1'}+{p[1][1]}"
            ),
        )


def test_two_runs_at_once_do_not_interfere(
    pytester: pytest.Pytester, orb_env: OrbEnv, pair: tuple[int, tuple[str, str]]
) -> None:
    iteration, (opts_a, opts_b) = pair
    foreign = make_foreign(orb_env, "orbpt-abcdef-s-0123456789ab", "shared-dev-box")
    pytester.makepyfile(test_inner=INNER)
    pytester.mkdir("deploys").joinpath("mark_deploy.py").write_text(DEPLOY)
    procs = {}
    for run, opts in (("a", opts_a), ("b", opts_b)):
        args = ["-rA", *(["-n", "2"] if opts == "-n2" else [])]
        log = pytester.path / f"log-{run}"
        procs[run] = (spawn_pytest(pytester.path, *args, env={"REL_RUN": run}, log=log), log)
    try:
        for proc, _ in procs.values():
            assert wait_for(lambda p=proc: p.poll() is not None, timeout=400)
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    outputs = {run: log.read_text() for run, (_, log) in procs.items()}
    names = {
        run: set((pytester.path / f"names-{run}").read_text().split())
        if (pytester.path / f"names-{run}").exists()
        else set()
        for run in procs
    }
    report = wait_clean(orb_env, foreign, timeout=60)
    counts = {run: outcome_counts(out) for run, out in outputs.items()}
    record_soak(
        "concurrent",
        iteration=iteration,
        options=[opts_a, opts_b],
        passed=sum(c.get("passed", 0) for c in counts.values()),
        failed=sum(c.get("failed", 0) + c.get("errors", 0) for c in counts.values()),
        leaked_machines=len(report.machines),
        leaked_records=len(report.records),
        foreign_lost=len(report.missing_foreign),
    )
    for run, out in outputs.items():
        assert counts[run].get("passed") == INNER_TESTS, f"run {run}:\n{out[-5000:]}"
        assert "left by dead runs" not in out  # neither reaped the other
    assert names["a"] and names["b"]
    assert not names["a"] & names["b"], "the runs shared a machine"
    run_ids = {
        run: {re.match(r"orbpt-([0-9a-f]{6})-", n).group(1) for n in names[run]} for run in names
    }  # type: ignore[union-attr]
    assert len(run_ids["a"]) == len(run_ids["b"]) == 1 and run_ids["a"] != run_ids["b"]
    assert report.clean, report
