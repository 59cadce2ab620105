from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack.orbctl import Orbctl

FAKE = Path(__file__).with_name("fake_orbctl.py")


@dataclass
class FakeOrbctl:
    """Scripted responses for ``fake_orbctl.py`` and the calls it received."""

    dir: Path

    def expect(
        self,
        cmd: str,
        *,
        rc: int = 0,
        stdout: str = "",
        stderr: str = "",
        sleep: float = 0,
        spawn_sleep: float = 0,
    ) -> FakeOrbctl:
        script = json.loads((self.dir / "script.json").read_text())
        script.append(
            {
                "cmd": cmd,
                "rc": rc,
                "stdout": stdout,
                "stderr": stderr,
                "sleep": sleep,
                "spawn_sleep": spawn_sleep,
            }
        )
        (self.dir / "script.json").write_text(json.dumps(script))
        return self

    def _logged(self) -> list[dict[str, Any]]:
        # Only complete lines: a test may poll while the fake is still writing its line.
        try:
            text = (self.dir / "calls.jsonl").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.split("\n")[:-1]]

    @property
    def calls(self) -> list[list[str]]:
        return [entry["argv"] for entry in self._logged()]

    @property
    def stdins(self) -> list[str]:
        return [entry["stdin"] for entry in self._logged()]

    @property
    def remaining(self) -> list[dict[str, Any]]:
        return list(json.loads((self.dir / "script.json").read_text()))

    def client(self, **kwargs: Any) -> Orbctl:
        return Orbctl(self.executable, env={"FAKE_ORBCTL_DIR": str(self.dir)}, **kwargs)

    @property
    def executable(self) -> str:
        return str(self.dir / "orbctl")


@pytest.fixture
def fake(tmp_path: Path) -> FakeOrbctl:
    d = tmp_path / "fake"
    d.mkdir()
    (d / "script.json").write_text("[]")
    exe = d / "orbctl"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    exe.chmod(0o755)
    return FakeOrbctl(d)


MODEL = Path(__file__).with_name("model_orbctl.py")


@dataclass
class ModelOrbctl:
    """The stateful model ``model_orbctl.py``: its machines, the calls it got, faults to come."""

    dir: Path

    @property
    def executable(self) -> str:
        return str(self.dir / "orbctl")

    def client(self, **kwargs: Any) -> Orbctl:
        return Orbctl(self.executable, env={"MODEL_ORBCTL_DIR": str(self.dir)}, **kwargs)

    @property
    def machines(self) -> dict[str, dict[str, str]]:
        try:
            return dict(json.loads((self.dir / "machines.json").read_text()))
        except FileNotFoundError:
            return {}

    def add(self, name: str, state: str = "running") -> None:
        """A machine the plugin did not make (a user's own)."""
        machines = self.machines
        machines[name] = {"state": state, "distro": "debian", "version": "bookworm"}
        (self.dir / "machines.json").write_text(json.dumps(machines))

    @property
    def calls(self) -> list[list[str]]:
        try:
            text = (self.dir / "calls.jsonl").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line)["argv"] for line in text.split("\n")[:-1]]

    def count(self, cmd: str) -> int:
        return sum(1 for c in self.calls if c and c[0] == cmd)

    def fail_next(self, cmd: str, stderr: str, *, times: int = 1, rc: int = 1) -> None:
        """The next ``times`` calls of ``cmd`` fail with ``stderr``, doing nothing."""
        path = self.dir / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else {}
        faults.setdefault(cmd, []).extend({"rc": rc, "stderr": stderr} for _ in range(times))
        path.write_text(json.dumps(faults))

    def latency(self, **seconds: float) -> None:
        (self.dir / "latency.json").write_text(json.dumps(seconds))


@pytest.fixture
def model(tmp_path: Path) -> ModelOrbctl:
    d = tmp_path / "model"
    d.mkdir()
    exe = d / "orbctl"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {MODEL} "$@"\n')
    exe.chmod(0o755)
    return ModelOrbctl(d)
