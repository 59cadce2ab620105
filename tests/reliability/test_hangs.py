"""The plugin against hung ``start``, ``stop``, ``delete`` and ``rename`` calls.

orbsim's ``ORBSIM_HANG`` makes a call hang until it is killed, having done nothing
(tests/orbsim/test_sim_fault_matrix.py).  Here a seed is chosen so that the *first* call of one
command in the run hangs and its retries do not: the plugin's per-call timeout
(``--orbstack-timeout``) must kill the hung process (its whole group: no ``orbsim`` process
is left), the retry (start, stop) or the cleanup (delete) must then do the right thing, every
test must pass, and no machine, registry record or process may be left.
"""

from __future__ import annotations

import random

import psutil
import pytest

from orbsim.oplog import read_ops
from pytest_orbstack.errors import OrbctlTimeoutError
from tests.plugin.conftest import OrbEnv
from tests.reliability.conftest import (
    leaks,
    make_foreign,
    run_pytester,
    stray_orbsim_calls,
    wait_clean,
)

INNER_SUITE = """
import pytest

@pytest.mark.orbstack(isolation="function")
@pytest.mark.parametrize("n", range(2))
def test_fresh(orb_vm, n):
    assert orb_vm.run(["hostname"]).stdout.strip() == orb_vm.name
"""
INNER_TESTS = 2
P_HANG = 0.5
TIMEOUT = 8  # --orbstack-timeout: kills each hung call after this long


def first_call_hangs(cmd: str, later: int = 8) -> int:
    """A seed for which orbsim's first ``cmd`` call hangs (p=P_HANG) and the next ``later``
    do not (orbsim draws the n-th call from ``Random(f"{seed}:{cmd}:{n}")``, faults.decide)."""
    for seed in range(100_000):
        draws = [random.Random(f"{seed}:{cmd}:{n}").random() for n in range(later + 1)]
        if draws[0] < P_HANG and all(d >= P_HANG for d in draws[1:]):
            return seed
    raise AssertionError("no seed found")


@pytest.mark.parametrize("cmd", ["start", "stop", "delete"])
def test_hung_lifecycle_call_is_killed_and_retried(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch, cmd: str
) -> None:
    foreign = make_foreign(orb_env, "not-ours")
    pytester.makepyfile(test_inner=INNER_SUITE)
    monkeypatch.setenv("ORBSIM_HANG", f"{cmd}={P_HANG}")
    monkeypatch.setenv("ORBSIM_SEED", str(first_call_hangs(cmd)))
    result = run_pytester(
        pytester, f"--orbstack-timeout={TIMEOUT}", "--orbstack-retries=4", "--orbstack-pool-size=0"
    )
    assert result.parseoutcomes().get("passed") == INNER_TESTS, result.stdout.str()[-6000:]
    monkeypatch.setenv("ORBSIM_FAULTS_OFF", "1")
    ops = [op for op in read_ops(orb_env.sim.home) if op["cmd"] == cmd]
    hung = [op for op in ops if op["fault"] == "hang"]
    assert len(hung) == 1, ops  # it really hung (rc null: it never exited by itself) ...
    assert hung[0]["rc"] is None
    assert not psutil.pid_exists(hung[0]["pid"])  # ... and the timeout killed it
    assert not stray_orbsim_calls(orb_env.sim.home)
    after = ops[ops.index(hung[0]) + 1 :]
    machine = hung[0]["machines"][0]
    if cmd == "delete":
        # the killed delete's reservation is void (the machine is gone); the cleanup's retry
        # finds nothing left to delete and the run ends clean
        assert machine not in orb_env.names()
    else:  # the retry of the same call succeeded
        assert [op["rc"] for op in after if machine in op["machines"]][:1] == [0], ops
    report = wait_clean(orb_env, foreign, timeout=60)
    assert report.clean, report


def test_hung_rename_is_killed_by_the_call_timeout(
    orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Orbctl.rename`` (the plugin does not rename on its own): the per-call timeout kills
    the hung call, nothing is renamed, and a second rename works."""
    (name,) = make_foreign(orb_env, "to-rename")
    monkeypatch.setenv("ORBSIM_HANG", "rename=1")
    client = orb_env.client()
    with pytest.raises(OrbctlTimeoutError):
        client.rename(name, "renamed", timeout=3)
    (op,) = [op for op in read_ops(orb_env.sim.home) if op["cmd"] == "rename"]
    assert (op["rc"], op["fault"]) == (None, "hang")
    assert not psutil.pid_exists(op["pid"])
    assert not stray_orbsim_calls(orb_env.sim.home)
    monkeypatch.delenv("ORBSIM_HANG")
    assert orb_env.names() == [name]
    client.rename(name, "renamed")
    assert orb_env.names() == ["renamed"]
    client.delete("renamed")
    assert leaks(orb_env).clean
