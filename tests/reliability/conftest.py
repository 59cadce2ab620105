"""Fixtures and helpers of the reliability suite (faults, kills, concurrent runs, bad input).

Every test gets ``orb_env`` (from ``tests/plugin/conftest.py``): a fresh simulator home and
registry directory, exported through the environment, so the op log counts exactly one test's
calls and "zero leaked machines" can be checked exactly:

* ``orbsim list`` in that home shows only the machines the test itself made on purpose as
  *foreign* ones (and every one of those is still there);
* the plugin's registry files under ``ORBSTACK_STATE_DIR`` hold no record (kept ones aside).

Short mode (default) runs a few fixed seeds and kill points; ``--soak N`` (registered in
``tests/conftest.py``) runs N of each instead, and writes one JSON line per iteration to
``$ORBSTACK_SOAK_RESULTS`` when that is set (``bench/soak.py`` sets it and prints the figures).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.orbsim.conftest import FAULT_VARS as SIM_FAULT_VARS
from tests.plugin import conftest as plugin_conftest
from tests.plugin.conftest import OrbEnv

orb_env = plugin_conftest.orb_env  # the fixture, shared with tests/plugin

#: Environment variables of the simulator's fault injection; cleared before every test so a
#: caller's shell never leaks faults into a test that does not ask for them.
FAULT_VARS = (
    *SIM_FAULT_VARS,
    "ORBSTACK_TIMEOUT",
    "ORBSTACK_RETRIES",
    "ORBSTACK_KEEP",
    "ORBSTACK_REUSE",
    "ORBSTACK_WATCHDOG",
    "ORBSTACK_MAX_CREATES",
    "ORBSTACK_POOL_SIZE",
    "PYTEST_ADDOPTS",
)


def soak_count(config: pytest.Config) -> int:
    value = config.getoption("soak", default=0)
    return int(value or 0)


def iterations(
    config: pytest.Config,
    short: Iterable[Any],
    soak: Callable[[int], Iterable[Any]],
    ident: Callable[[Any], str] = str,
) -> list[Any]:
    """Parameters for a test: ``short`` normally, ``soak(N)`` under ``--soak N`` (marked soak)."""
    n = soak_count(config)
    if n <= 0:
        return [pytest.param(p, id=ident(p)) for p in short]
    return [pytest.param(p, id=ident(p), marks=pytest.mark.soak) for p in soak(n)]


@pytest.fixture(autouse=True)
def _clean_fault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in FAULT_VARS:
        monkeypatch.delenv(var, raising=False)


LIFECYCLE = frozenset({"create", "clone", "start", "stop", "restart", "delete", "rename"})


def stray_orbsim_calls(home: Path) -> list[psutil.Process]:
    """``orbsim`` lifecycle calls still running against ``home``: a hung call survives the
    SIGKILL of the pytest that started it (it runs in its own session, like orbctl)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if not any(part.endswith("orbsim") for part in cmd[:2]):
            continue
        if not LIFECYCLE.intersection(cmd[1:3]):
            continue
        try:
            if proc.environ().get("ORBSIM_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(autouse=True)
def _no_stray_calls(orb_env: OrbEnv) -> Iterator[None]:
    """After the test (before ``orb_env`` deletes its machines): end the calls this test's
    runs left hanging, one by one by pid, so the home can be cleaned."""
    yield
    for proc in stray_orbsim_calls(orb_env.sim.home):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


# -- leak checks ------------------------------------------------------------------------------


def registry_records(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Every record of every registry file under ``state_dir``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(state_dir.glob("registry-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out.update(data.get("machines", {}))
    return out


@dataclass
class LeakReport:
    machines: list[str]  # in the simulator, not foreign
    missing_foreign: list[str]  # foreign machines that disappeared
    records: list[str]  # registry records left (not kept)
    listing: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.machines or self.missing_foreign or self.records)

    def __str__(self) -> str:
        return (
            f"leaked machines {self.machines}, foreign machines gone {self.missing_foreign}, "
            f"registry records left {self.records}; list: {self.listing}"
        )


def leaks(env: OrbEnv, foreign: Iterable[str] = (), *, kept: Iterable[str] = ()) -> LeakReport:
    allowed = set(foreign) | set(kept)
    listing = [(r.name, r.state) for r in env.client().list()]
    names = {n for n, _ in listing}
    records = registry_records(env.state_dir)
    return LeakReport(
        machines=sorted(names - allowed),
        missing_foreign=sorted(set(foreign) - names),
        records=sorted(n for n, r in records.items() if not r.get("kept") and n not in kept),
        listing=listing,
    )


def wait_clean(
    env: OrbEnv, foreign: Iterable[str] = (), *, timeout: float = 90, kept: Iterable[str] = ()
) -> LeakReport:
    """Poll until nothing is leaked (the watchdog works in the background) or time is up."""
    foreign = list(foreign)
    deadline = time.monotonic() + timeout
    report = leaks(env, foreign, kept=kept)
    while not report.clean and time.monotonic() < deadline:
        time.sleep(0.5)
        report = leaks(env, foreign, kept=kept)
    return report


def make_foreign(env: OrbEnv, *names: str) -> list[str]:
    """Machines the plugin did not create (some look like its own): they must survive."""
    client = env.client()
    made = []
    for name in names:
        client.create("debian", name)
        made.append(name)
    return made


# -- running pytest ---------------------------------------------------------------------------


#: Runs pytest with Ctrl-C handled as an interactive run would: a process started in the
#: background by a non-interactive shell (``nohup make test &``, some CI launchers) inherits
#: SIGINT *ignored*, and Python then installs no KeyboardInterrupt handler of its own.
_PYTEST_WITH_SIGINT = (
    "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.exit(pytest.console_main())"
)


def inner_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", _PYTEST_WITH_SIGINT, "-p", "no:cacheprovider", *args]


def spawn_pytest(
    cwd: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A pytest run in its own session (so it can be SIGKILLed / SIGINTed as a group)."""
    out = open(log, "wb") if log is not None else subprocess.PIPE  # noqa: SIM115
    try:
        return subprocess.Popen(
            inner_argv(*args),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def run_pytester(pytester: pytest.Pytester, *args: str, timeout: float = 600) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args, timeout=timeout)


def wait_for(predicate: Callable[[], bool], timeout: float = 120, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def outcome_counts(text: str) -> dict[str, int]:
    """``{"passed": 3, "failed": 1}`` from pytest's last summary line."""
    return pytest.RunResult.parse_summary_nouns(text.splitlines())


def seed_for_draws(cmd: str, outcomes: list[bool], p: float, *, draw: int) -> int:
    """An ``ORBSIM_SEED`` under which ``cmd``'s n-th faulted call draws below ``p`` exactly
    where ``outcomes[n]`` is True.  orbsim draws the n-th call from
    ``Random(f"{seed}:{cmd}:{n}")`` (``faults.decide``): ``draw`` 0 is the hang draw, 1 the
    detach draw, 2 the fail draw."""
    import random

    for seed in range(200_000):
        hits = []
        for n in range(len(outcomes)):
            rng = random.Random(f"{seed}:{cmd}:{n}")
            hits.append([rng.random() for _ in range(draw + 1)][draw] < p)
        if hits == outcomes:
            return seed
    raise AssertionError(f"no seed gives {outcomes} for {cmd}")


def record_soak(kind: str, **data: Any) -> None:
    """Append one iteration's figures to ``$ORBSTACK_SOAK_RESULTS`` (set by bench/soak.py)."""
    path = os.environ.get("ORBSTACK_SOAK_RESULTS")
    if not path:
        return
    line = json.dumps({"kind": kind, "ts": round(time.time(), 3), **data}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
