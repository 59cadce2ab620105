"""Fixtures for pytester sessions of the plugin against the simulator.

Each test gets its own simulator home and registry directory (the base image cache is shared),
so creates and deletes can be counted exactly from the simulator's operation log.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_orbstack.orbctl import Orbctl
from tests.conftest import SimHome


@dataclass
class OrbEnv:
    sim: SimHome
    state_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "ORBSIM_HOME": str(self.sim.home),
            "ORBSTACK_STATE_DIR": str(self.state_dir),
            "ORBSTACK_BACKEND": "sim",
        }

    def client(self) -> Orbctl:
        return self.sim.client()

    def names(self) -> list[str]:
        return self.sim.machine_names()

    def count(self, cmd: str) -> int:
        return self.sim.count(cmd)

    def made(self) -> Counter[str]:
        """Machines this home made, by how and for what: ``create``, and clones by the role
        their name gives (``fresh``, ``replica``, ``template``, ``session``, ``reuse``)."""
        made: Counter[str] = Counter()
        for op in self.sim.ops():
            if op.get("rc") != 0:
                continue
            if op.get("cmd") == "create":
                made["create"] += 1
            elif op.get("cmd") == "clone":
                made[_role(str(op["args"][-1]))] += 1
        return made

    def wait_until_empty(self, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        names = self.names()
        while names and time.monotonic() < deadline:
            time.sleep(0.5)
            names = self.names()
        return names


def _role(name: str) -> str:
    for part, role in (("-rep-", "replica"), ("-tpl-", "template"), ("-s-", "session"),
                       ("-reuse-", "reuse"), ("-base-", "base")):  # fmt: skip
        if part in f"{name}-":
            return role
    return "fresh"


@pytest.fixture
def orb_env(sim_home: SimHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OrbEnv]:
    home = tmp_path / "simhome"
    home.mkdir()
    env = OrbEnv(SimHome(home=home, executable=sim_home.executable), tmp_path / "state")
    for key, value in env.env.items():
        monkeypatch.setenv(key, value)
    yield env
    client = env.client()
    names = [r.name for r in client.list()]
    if names:
        client.delete(*names)
