"""``MachineManager`` against the fake ``orbctl`` (tests/unit/fake_orbctl.py): no root, no
simulator.  The fake answers from a script and fails loudly on any call it did not expect, so
these tests pin the exact calls a fresh machine costs and what a transient error changes."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.lifecycle import MachineManager
from pytest_orbstack.registry import Owner, Registry
from pytest_orbstack.settings import RunContext, Settings
from pytest_orbstack.spec import MachineSpec
from tests.unit.conftest import FakeOrbctl

READY = "failed=\nos=debian bookworm 12\n"
BUSY = "[-32098] cannot clone: operations are in progress: clone\n"


def _info(state: str) -> str:
    record = {
        "id": "01J", "name": "x", "builtin": False, "state": state,
        "image": {"distro": "debian", "version": "bookworm", "arch": "amd64", "variant": "default"},
        "config": {"isolated": False, "default_username": "u"},
    }  # fmt: skip
    return json.dumps({"record": record, "disk_size": 1, "ip4": "192.168.139.2"})


def _manager(fake: FakeOrbctl, tmp_path: Path, retries: int = 1) -> MachineManager:
    settings = Settings(executable=fake.executable, state_dir=tmp_path / "state", retries=retries)
    run = RunContext("abc123", "main", Owner.current(), SharedDir(tmp_path / "run"))
    return MachineManager(
        fake.client(), settings, run, Registry(tmp_path / "state" / "registry.json")
    )


def _base_then_clone(fake: FakeOrbctl, *, clone_failures: int = 0) -> None:
    fake.expect("create").expect("info", stdout=_info("running"))
    fake.expect("info", stdout=_info("running")).expect("run", stdout=READY)
    fake.expect("run").expect("stop")  # generalized, then stopped: the clone origin
    for _ in range(clone_failures):
        fake.expect("clone", rc=1, stderr=BUSY)
        # a failed attempt may have made the machine: its state is looked at before a retry
        fake.expect("info", rc=1, stderr="[-32098] machine not found: 'orbpt-abc123-main-f-1'\n")
    fake.expect("clone").expect("start").expect("run", stdout=READY)


def test_a_fresh_machine_is_a_clone_of_one_base(fake: FakeOrbctl, tmp_path: Path) -> None:
    _base_then_clone(fake)
    manager = _manager(fake, tmp_path)
    machine = manager.fresh(MachineSpec(image="debian", isolation="function"), kind="function")
    calls = [c[:2] for c in fake.calls]
    base = fake.calls[0][-1]
    assert calls[0] == ["create", "debian"] and "-base-" in base
    assert [c[0] for c in calls] == [
        "create", "info", "info", "run", "run", "stop", "clone", "start", "run"
    ]  # fmt: skip
    assert fake.calls[6][1:] == [base, machine.name]  # cloned from the base, by name
    assert fake.remaining == []
    records = json.loads((tmp_path / "state" / "registry.json").read_text())["machines"]
    assert set(records) == {base, machine.name}  # recorded before they were made


def test_a_busy_clone_is_looked_at_then_retried(fake: FakeOrbctl, tmp_path: Path) -> None:
    _base_then_clone(fake, clone_failures=1)
    manager = _manager(fake, tmp_path, retries=3)
    machine = manager.fresh(MachineSpec(image="debian", isolation="function"), kind="function")
    clones = [c for c in fake.calls if c[0] == "clone"]
    assert len(clones) == 2 and clones[0] == clones[1] and clones[1][-1] == machine.name
    after = fake.calls[fake.calls.index(clones[0]) + 1]
    assert after[:3] == ["info", "-f", "json"] and after[-1] == machine.name
    assert fake.remaining == []
