"""SIGKILL of pytest during setup, test and teardown; Ctrl-C during create.

Each case starts a real pytest run (its own session, so the whole process group can be killed
like a CI runner does), waits for the phase to begin, waits a seeded random extra moment, then
SIGKILLs the group.  Afterwards no machine of that run may be left - cleaned by the detached
watchdog, or (``ORBSTACK_WATCHDOG=0``) by the start-up reaper of the next run - while machines
the plugin did not make (one named like the plugin's own) survive.

The phase is detected from the outside: the registry (a record ``creating`` = a create or clone
is under way; a template record with a machine id = its deploy is running), or files the inner
tests and fixtures write when their body or teardown begins.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from orbsim.oplog import read_ops
from tests.plugin.conftest import OrbEnv
from tests.reliability.conftest import (
    iterations,
    leaks,
    make_foreign,
    record_soak,
    registry_records,
    run_pytester,
    spawn_pytest,
    stray_orbsim_calls,
    wait_clean,
    wait_for,
)

INNER = """
import os, time
from pathlib import Path
import pytest

HERE = Path(__file__).parent

@pytest.fixture
def flags():
    yield
    (HERE / "teardown").touch()  # torn down before orb_vm's machine (requested after it)

@pytest.mark.orbstack(isolation="function")
@pytest.mark.parametrize("n", range(2))
def test_fn(orb_vm, flags, n):
    (HERE / "call").touch()
    time.sleep(float(os.environ.get("REL_CALL_SLEEP", "0")))

def test_session(orb_vm, flags):
    assert orb_vm.run(["true"]).ok

@pytest.mark.orbstack(isolation="function", deploy="deploys/slow_deploy.py")
def test_cloned(orb_vm):
    pass
"""

SLOW_DEPLOY = """
from pyinfra.operations import server
server.shell(name="slow provisioning", commands=["sleep 3"])
"""


def _write_inner(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    pytester.mkdir("deploys").joinpath("slow_deploy.py").write_text(SLOW_DEPLOY)


def _creating(env: OrbEnv) -> bool:
    return any(r.get("state") == "creating" for r in registry_records(env.state_dir).values())


def _deploying(env: OrbEnv) -> bool:
    """A template is being provisioned: recorded, not ready yet, and its machine is running."""
    making = {
        name
        for name, r in registry_records(env.state_dir).items()
        if r.get("kind") == "template" and r.get("state") == "creating"
    }
    return bool(making) and any(
        m.name in making and m.state == "running" for m in env.client().list()
    )


def _file(path: Path) -> Callable[[OrbEnv], bool]:
    return lambda env: path.exists()


#: phase -> (inner test selection, extra environment, trigger)
def _phase(name: str, root: Path) -> tuple[list[str], dict[str, str], Callable[[OrbEnv], bool]]:
    if name == "create":
        return ["-k", "test_fn"], {"ORBSIM_LATENCY": "create=1.5"}, _creating
    if name == "deploy":
        return ["-k", "test_cloned"], {}, _deploying
    if name == "call":
        return ["-k", "test_fn"], {"REL_CALL_SLEEP": "60"}, _file(root / "call")
    if name == "teardown":
        env = {"ORBSIM_LATENCY": "delete=1.5"}
        return ["-k", "test_fn or test_session"], env, _file(root / "teardown")
    raise ValueError(name)


PHASES = ("create", "deploy", "call", "teardown")
#: Short mode: every phase once; the reaper (no watchdog) for two of them; xdist for one.
SHORT = [
    ("create", "watchdog", 1, 0),
    ("deploy", "reaper", 1, 1),
    ("call", "watchdog", 2, 2),
    ("teardown", "reaper", 1, 3),
]


def _soak(n: int) -> list[tuple[str, str, int, int]]:
    cases = []
    for i in range(n):
        for j, phase in enumerate(PHASES):
            cleaner = ("watchdog", "reaper")[(i + j) % 2]
            cases.append((phase, cleaner, 2 if (i + j) % 3 == 0 else 1, 100 + i))
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kill_case" in metafunc.fixturenames:
        metafunc.parametrize(
            "kill_case",
            iterations(
                metafunc.config, SHORT, _soak, lambda c: f"{c[0]}-{c[1]}-w{c[2]}-seed{c[3]}"
            ),
        )


def test_sigkill_leaves_no_machines(
    pytester: pytest.Pytester,
    orb_env: OrbEnv,
    monkeypatch: pytest.MonkeyPatch,
    kill_case: tuple[str, str, int, int],
) -> None:
    phase, cleaner, workers, seed = kill_case
    foreign = make_foreign(orb_env, "orbpt-0badc0-main-test-fn-0-1", "someone-elses")
    _write_inner(pytester)
    select, extra, trigger = _phase(phase, pytester.path)
    if cleaner == "reaper":
        monkeypatch.setenv("ORBSTACK_WATCHDOG", "0")
    xdist = ["-n", str(workers)] if workers > 1 else []
    log = pytester.path / "inner.log"
    proc = spawn_pytest(pytester.path, *xdist, *select, env=extra, log=log)
    try:
        reached = wait_for(lambda: trigger(orb_env) or proc.poll() is not None, timeout=120)
        assert reached and proc.poll() is None, f"phase {phase} not reached: {log.read_text()}"
        delay = random.Random(seed).uniform(0, 1.0)
        wait_for(lambda: False, timeout=delay)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    made = [n for n, _ in leaks(orb_env, foreign).listing if n not in foreign]
    if cleaner == "reaper":
        result = run_pytester(pytester, "-k", "nothing_selected_here")
        assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout.str()
        report = wait_clean(orb_env, foreign, timeout=30)
    else:
        report = wait_clean(orb_env, foreign, timeout=90)
    record_soak(
        "kill",
        phase=phase,
        cleaner=cleaner,
        workers=workers,
        seed=seed,
        machines_at_kill=len(made),
        leaked_machines=len(report.machines),
        leaked_records=len(report.records),
        foreign_lost=len(report.missing_foreign),
    )
    assert report.clean, f"{report}\n--- inner run:\n{log.read_text()[-4000:]}"
    # nothing was deleted that the plugin had not recorded as its own
    deleted = {
        m for op in read_ops(orb_env.sim.home) if op["cmd"] == "delete" for m in op["machines"]
    }
    assert not deleted & set(foreign)


def test_ctrl_c_during_create_leaves_nothing(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT while the foreground create and the pool's background creates are under way."""
    foreign = make_foreign(orb_env, "orbpt-c0ffee-main-test-fn-0-1")
    _write_inner(pytester)
    monkeypatch.setenv("ORBSIM_LATENCY", "create=2")
    monkeypatch.setenv("ORBSTACK_WATCHDOG", "0")  # the run itself must clean up
    log = pytester.path / "inner.log"
    proc = spawn_pytest(pytester.path, "-k", "test_fn", log=log)
    try:
        assert wait_for(lambda: _creating(orb_env), timeout=60), log.read_text()
        wait_for(lambda: False, timeout=0.5)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = log.read_text()
    assert "KeyboardInterrupt" in out, out[-3000:]
    report = leaks(orb_env, foreign)  # no waiting: the interrupted run cleaned up before exit
    assert report.clean, f"{report}\n{out[-3000:]}"


@pytest.mark.parametrize(
    "pool",
    [
        0,
        2,
    ],
)
def test_ctrl_c_during_hung_create_leaves_nothing(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch, pool: int
) -> None:
    """Every create hangs (the machine stays reserved as ``creating``); Ctrl-C must end the
    run long before the 300 s per-call timeout, and nothing may be left."""
    _write_inner(pytester)
    monkeypatch.setenv("ORBSIM_HANG", "create=1")
    monkeypatch.setenv("ORBSTACK_WATCHDOG", "0")
    log = pytester.path / "inner.log"
    args = ["-k", "test_fn", "--orbstack-timeout=300", f"--orbstack-pool-size={pool}"]
    proc = spawn_pytest(pytester.path, *args, log=log)
    try:
        assert wait_for(lambda: _hung_create(orb_env), timeout=60), log.read_text()
        os.killpg(proc.pid, signal.SIGINT)
        ended = wait_for(lambda: proc.poll() is not None, timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert ended, f"still running 30 s after Ctrl-C:\n{log.read_text()[-3000:]}"
    assert not stray_orbsim_calls(orb_env.sim.home)  # the hung create was killed with the run
    monkeypatch.setenv("ORBSIM_FAULTS_OFF", "1")
    report = leaks(orb_env)
    assert report.clean, f"{report}\n{log.read_text()[-3000:]}"


def _hung_create(env: OrbEnv) -> bool:
    return any(op["cmd"] == "create" and op.get("fault") == "hang" for op in read_ops(env.sim.home))
