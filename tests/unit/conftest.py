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
