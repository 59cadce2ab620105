"""Fixtures for the simulator's own tests (real machines, no plugin).

``sim`` is session-scoped: a fresh ``ORBSIM_HOME`` under this run's (this xdist worker's) tmp
dir, while the debootstrapped base cache (``ORBSIM_CACHE``, default ``~/.cache/orbsim``) is
shared by every home and run.  The ``orbsim``/``orbctl``/``orb`` commands are tiny launchers
written next to the home, so the ``orb`` argv[0] dispatch can be tested and no PATH shim is
involved.  At session end every machine of every home it made is deleted, and the fixture
asserts that no container (LXC monitor or init) and no mount under those homes remain.

Other test modules in this directory use ``sim_home`` from ``tests/conftest.py``; nothing here
overrides it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from orbsim.faults import BEHAVIOUR_VARS

FAULT_VARS = BEHAVIOUR_VARS  # orbsim's own list of behaviour switches
LAUNCHER = "#!{python}\nimport sys\nfrom orbsim.cli import main\nsys.exit(main())\n"


def unusable_reason() -> str | None:
    from orbsim.host import host_problem

    problem = host_problem()
    return f"{problem} (see `orbsim doctor`)" if problem else None


def _proc(pid: str) -> tuple[bytes, int, bool] | None:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return cmd, int(fields[1]), fields[0] not in (b"Z", b"X")


def live_holders(home: Path) -> list[int]:
    """Live processes that keep a machine of ``home`` running: the LXC monitors of its
    containers (``[lxc monitor] HOME/lxc ID``) and the containers' init processes."""
    needle = b"[lxc monitor] " + str(home / "lxc").encode() + b" "
    procs = {e: _proc(e) for e in os.listdir("/proc") if e.isdigit()}
    monitors = {int(pid) for pid, p in procs.items() if p and p[2] and p[0].startswith(needle)}
    inits = {int(pid) for pid, p in procs.items() if p and p[2] and p[1] in monitors}
    return sorted(monitors | inits)


def leases_of(home: Path) -> list[str]:
    """Addresses orbsim's network still reserves for machines of ``home``."""
    from orbsim import net

    ldir = net.net_dir() / "leases"
    out = []
    if ldir.is_dir():
        for p in ldir.iterdir():
            try:
                if json.loads(p.read_text()).get("home") == str(home):
                    out.append(p.name)
            except (OSError, ValueError):
                continue
    return out


def mounts_under(home: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(home) in line]


class Sim:
    """Runs the simulator CLI with one state home."""

    def __init__(self, root: Path, home: Path, bindir: Path) -> None:
        self.root = root
        self.home = home
        self.bindir = bindir
        self.env = {k: v for k, v in os.environ.items() if k not in FAULT_VARS}
        self.env["ORBSIM_HOME"] = str(home)
        self.env["ORBSIM_DEFAULT_USER"] = "tester"

    def exe(self, prog: str = "orbsim") -> str:
        return str(self.bindir / prog)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 180,
        env: dict[str, str] | None = None,
        prog: str = "orbsim",
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe(prog), *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            cwd=cwd,
        )

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        res = self(*args, **kw)
        assert res.returncode == 0, f"orbsim {' '.join(args)} -> {res.returncode}\n{res.stderr}"
        return res

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args).stdout)

    def name(self, prefix: str = "m") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def create(self, name: str | None = None, image: str = "debian", *flags: str) -> str:
        name = name or self.name()
        self.ok("create", *flags, image, name)
        return name

    def state(self, name: str) -> str | None:
        for rec in self.json("list", "-f", "json"):
            if rec["name"] == name:
                return str(rec["state"])
        return None

    def wait_state(self, name: str, want: str | None, timeout: float = 60) -> str | None:
        deadline = time.monotonic() + timeout
        st = self.state(name)
        while st != want and time.monotonic() < deadline:
            time.sleep(0.1)
            st = self.state(name)
        return st

    def holders(self) -> list[int]:
        return live_holders(self.home)

    def ops(self) -> list[dict[str, Any]]:
        from orbsim.oplog import read_ops

        return read_ops(self.home)


class SimFactory:
    def __init__(self, root: Path, bindir: Path) -> None:
        self.root = root
        self.bindir = bindir
        self.homes: list[Sim] = []

    def new(self) -> Sim:
        home = self.root / f"home-{len(self.homes)}"
        sim = Sim(self.root, home, self.bindir)
        self.homes.append(sim)
        return sim

    def cleanup(self) -> list[str]:
        problems = []
        for sim in self.homes:
            if not sim.home.exists():
                continue
            res = sim("delete", "-a", "-f", timeout=300)
            if res.returncode != 0:
                problems.append(f"{sim.home}: delete -a -f failed: {res.stderr}")
            deadline = time.monotonic() + 30
            while sim.holders() and time.monotonic() < deadline:
                time.sleep(0.2)
            if sim.holders():
                problems.append(f"{sim.home}: holder processes remain: {sim.holders()}")
            if mounts_under(sim.home):
                problems.append(f"{sim.home}: mounts remain: {mounts_under(sim.home)}")
            leases = leases_of(sim.home)
            if leases:
                problems.append(f"{sim.home}: network addresses still reserved: {leases}")
        return problems


def _write_launchers(bindir: Path) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    for prog in ("orbsim", "orbctl", "orb"):
        p = bindir / prog
        p.write_text(LAUNCHER.format(python=sys.executable))
        p.chmod(0o755)


@pytest.fixture(scope="session")
def sim_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFactory]:
    reason = unusable_reason()
    if reason:
        pytest.skip(f"simulator tests skipped: {reason}")
    root = tmp_path_factory.mktemp("orbsim")
    bindir = root / "bin"
    _write_launchers(bindir)
    factory = SimFactory(root, bindir)
    prep = factory.new()
    res = prep("sim-prepare", timeout=1800)
    assert res.returncode == 0, f"orbsim sim-prepare failed:\n{res.stderr}"
    yield factory
    problems = factory.cleanup()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def sim(sim_factory: SimFactory) -> Sim:
    """The session's simulator home (shared by the tests of this worker)."""
    return sim_factory.homes[0]


@pytest.fixture
def fresh_sim(sim_factory: SimFactory) -> Iterator[Sim]:
    """A brand-new, empty simulator home for one test (its machines are deleted after it)."""
    s = sim_factory.new()
    yield s
    if s.home.exists():
        s("delete", "-a", "-f", timeout=300)


@pytest.fixture(scope="module")
def machine(sim: Sim) -> Iterator[str]:
    """One running debian machine shared by a module's tests."""
    name = sim.create(sim.name("shared"))
    yield name
    sim("delete", "-f", name)


def run_many(
    argvs: Sequence[Sequence[str]], env: dict[str, str], timeout: float = 300
) -> list[int]:
    """Start all argv lists at once and return their exit codes."""
    procs = [
        subprocess.Popen(
            list(a),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for a in argvs
    ]
    codes = []
    for p in procs:
        p.communicate(timeout=timeout)
        codes.append(p.returncode)
    return codes
