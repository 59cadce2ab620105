"""Pipelined supply: pooled machines, exact creation counts, unused deletes, background faults."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.plugin.conftest import OrbEnv
from tests.plugin.test_machines import _spawn_pytest, _wait_for

FN_TESTS = """
import pytest
pytestmark = pytest.mark.orbstack(isolation="function")

@pytest.mark.parametrize("n", range({n}))
def test_fresh(orb_vm, n):
    assert not orb_vm.run(["test", "-e", "/tmp/used"]).ok
    orb_vm.run(["touch", "/tmp/used"], check=True)
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args, timeout=600)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist2"])
def test_pool_creates_exactly_what_tests_need(
    pytester: pytest.Pytester, orb_env: OrbEnv, workers: list[str]
) -> None:
    report = pytester.path / "report.json"
    pytester.makepyfile(test_fn=FN_TESTS.format(n=6))
    result = run(pytester, "--orbstack-pool-size=2", f"--orbstack-report={report}", *workers)
    result.assert_outcomes(passed=6)
    made = orb_env.made()
    assert made["create"] == 1  # the base: every fresh machine is a clone of it
    assert made["fresh"] == 6  # never more than the tests need
    assert orb_env.names() == []
    data = json.loads(report.read_text())
    assert len(data["tests"]) == 6
    assert all("waited" in t for t in data["tests"])
    assert sum(m["tests"] for m in data["machines"]) == 6


def test_pooled_but_unused_machines_are_deleted(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    pytester.makepyfile(
        test_stop="""
        import pytest
        pytestmark = pytest.mark.orbstack(isolation="function")
        @pytest.mark.parametrize("n", range(5))
        def test_x(orb_vm, n):
            assert n != 0, "stop the run with -x"
        """
    )
    result = run(pytester, "--orbstack-pool-size=2", "-x")
    result.assert_outcomes(failed=1)
    made = orb_env.made()
    assert made["create"] == 1  # the base
    created = made["fresh"]
    assert 1 <= created <= 3  # the first test's machine plus at most two prepared ahead
    assert orb_env.names() == []
    result.stdout.fnmatch_lines(["*unused, deleted*"] if created > 1 else ["*"])


def test_transient_failures_in_background_clones_are_retried(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSIM_FAIL", "clone=0.5,start=0.3")
    monkeypatch.setenv("ORBSIM_SEED", "7")
    deploys = pytester.path / "deploys"
    deploys.mkdir()
    (deploys / "role.py").write_text(
        "from pyinfra.operations import server\n"
        "server.shell(name='mark', commands=['touch /var/tmp/provisioned'])\n"
    )
    pytester.makepyfile(
        test_role="""
        import pytest
        pytestmark = pytest.mark.orbstack(isolation="function", deploy="deploys/role.py")
        @pytest.mark.parametrize("n", range(4))
        def test_x(orb_vm, n):
            assert orb_vm.run(["test", "-e", "/var/tmp/provisioned"]).ok
        """
    )
    result = run(pytester, "--orbstack-pool-size=2", "--orbstack-retries=8")
    result.assert_outcomes(passed=4)
    ops = orb_env.sim.ops()
    failed_clones = [op for op in ops if op["cmd"] == "clone" and op["rc"] not in (0, None)]
    assert failed_clones, "the seed should inject at least one clone failure"
    assert orb_env.made()["fresh"] == 4
    assert orb_env.names() == []


def test_permanent_base_failure_fails_the_tests_that_need_it_and_nothing_else(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSIM_PERMANENT", "create=image")
    pytester.makepyfile(test_fn=FN_TESTS.format(n=3), test_plain="def test_plain():\n    pass\n")
    result = run(pytester, "--orbstack-pool-size=2", "-p", "no:randomly")
    # The image cannot be had: every test of that spec fails at once with orbctl's words (one
    # create tried, not one per test); the test without a machine passes.
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(["*make rootfs: image not found*"])
    assert orb_env.count("create") == 0
    assert orb_env.names() == []


def test_sigkill_while_the_pool_prepares_leaves_nothing(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBSIM_LATENCY", "create=2")
    pytester.makepyfile(
        test_slow="""
        import pytest, time
        pytestmark = pytest.mark.orbstack(isolation="function")
        @pytest.mark.parametrize("n", range(4))
        def test_x(orb_vm, n):
            open("started", "w").close()
            time.sleep(60)
        """
    )
    proc = _spawn_pytest(pytester, "--orbstack-pool-size=2")
    assert _wait_for(lambda: (pytester.path / "started").exists(), timeout=120)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_for(lambda: orb_env.names() == [], timeout=90), orb_env.names()
