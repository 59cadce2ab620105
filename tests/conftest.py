"""Shared fixtures for the project's own tests.

``sim_home`` gives each test session (each xdist worker) its own simulator state home, while the
debootstrapped base image cache (``ORBSIM_CACHE``) is shared, so the base is built once per
machine, not once per test.  Tests that need real simulator machines are skipped with a clear
reason where the simulator cannot run (not Linux, not root, no debootstrap and no cached base).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import CreateOptions, Orbctl

pytest_plugins = ["pytester", "tests.conformance.plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        type=int,
        default=0,
        metavar="N",
        help="reliability soak: run the fault, kill and concurrency tests N times each "
        "(default 0: the short CI form); see docs/reliability.md",
    )


# pytester points HOME at each test's temporary directory; pin the simulator's base image cache
# to the real one first, so pytester sessions do not debootstrap a base of their own.
os.environ.setdefault(
    "ORBSIM_CACHE",
    str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "orbsim"),
)


def orbsim_executable() -> str | None:
    found = shutil.which("orbsim")
    if found:
        return found
    candidate = Path(sys.executable).with_name("orbsim")
    return str(candidate) if candidate.exists() else None


@dataclass
class SimHome:
    """A simulator state home: where machines of this test session live."""

    home: Path
    executable: str
    created: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"ORBSIM_HOME": str(self.home)}

    def client(self, **kwargs: object) -> Orbctl:
        return Orbctl(self.executable, env=self.env, **kwargs)  # type: ignore[arg-type]

    def ops(self) -> list[dict[str, object]]:
        from orbsim.oplog import read_ops

        return read_ops(self.home)

    def count(self, cmd: str) -> int:
        return sum(1 for op in self.ops() if op.get("cmd") == cmd and op.get("rc") == 0)

    def machine_names(self) -> list[str]:
        return [r.name for r in self.client().list()]

    def unique_name(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.created.append(name)
        return name


def _sim_unusable_reason(executable: str | None) -> str | None:
    if not sys.platform.startswith("linux"):
        return "the orbsim simulator runs machines on Linux only"
    if executable is None:
        return "orbsim is not installed (pip install -e .)"
    proc = subprocess.run(
        [executable, "status"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ORBSIM_HOME": os.environ.get("ORBSIM_PROBE_HOME", "/tmp/orbsim-probe")},
    )
    if proc.returncode == 1 and proc.stderr.strip():
        return f"orbsim is unusable here: {proc.stderr.strip().splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def sim_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHome]:
    """A fresh simulator home for this session; every machine in it is deleted at the end."""
    exe = orbsim_executable()
    reason = _sim_unusable_reason(exe)
    if reason:
        pytest.skip(reason)
    assert exe is not None
    home = tmp_path_factory.mktemp("orbsim-home")
    sim = SimHome(home=home, executable=exe)
    yield sim
    client = sim.client()
    names = [r.name for r in client.list()]
    if names:
        client.delete(*names)


@pytest.fixture
def sim_client(sim_home: SimHome) -> Orbctl:
    return sim_home.client()


@pytest.fixture
def new_machine(sim_home: SimHome) -> Iterator[Callable[..., str]]:
    """Create simulator machines directly (no plugin); deleted when the test ends."""
    client = sim_home.client()
    made: list[str] = []

    def make(image: str = "debian:bookworm", **kwargs: str) -> str:
        name = sim_home.unique_name()
        client.create(image, name, CreateOptions(**kwargs))
        made.append(name)
        return name

    yield make
    existing = {r.name for r in client.list()}
    gone = [n for n in made if n in existing]
    if gone:
        client.delete(*gone)


def module_machine(sim: SimHome, prefix: str) -> Iterator[Machine]:
    """Body of a module-scoped fixture: one simulator machine, deleted afterwards."""
    client = sim.client()
    name = sim.unique_name(prefix)
    client.create("debian:bookworm", name)
    try:
        yield Machine(name, client)
    finally:
        if name in {r.name for r in client.list()}:
            client.delete(name)


def read(vm: Machine, path: str) -> str:
    """A file's content in the machine, read as root."""
    return vm.run(["cat", path], user="root", check=True).stdout


def stat(vm: Machine, path: str) -> str:
    """``owner group mode`` of a path in the machine."""
    return vm.run(["stat", "-c", "%U %G %a", path], user="root", check=True).stdout.strip()
