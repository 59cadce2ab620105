"""``Supply`` (the background pool) against the stateful model ``orbctl`` (model_orbctl.py): no
root, no simulator, so a contributor on macOS runs these.  The model answers concurrent calls
from one machine table under a lock, so the pool's threads meet a consistent OrbStack; what is
checked is what a user notices - machines made exactly as the tests need, faults in background
work retried or reaching the test, nothing left behind, nothing of the user's touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.errors import OrbctlError
from pytest_orbstack.lifecycle import MachineManager
from pytest_orbstack.registry import Owner, Registry
from pytest_orbstack.settings import RunContext, Settings
from pytest_orbstack.spec import MachineSpec
from pytest_orbstack.supply import SharedPool, Supply
from tests.unit.conftest import ModelOrbctl

SPEC = MachineSpec(image="debian", isolation="function")
BUSY = "[-32098] cannot clone: operations are in progress: clone\n"
FOREIGN = "orbpt-feed01-main-f-1"  # named like the plugin's own, made by someone else


def _run(model: ModelOrbctl, tmp_path: Path, pool: int | None) -> tuple[Supply, MachineManager]:
    settings = Settings(executable=model.executable, state_dir=tmp_path / "state", retries=4)
    run = RunContext("abc123", "main", Owner.current(), SharedDir(tmp_path / "run"))
    manager = MachineManager(
        model.client(), settings, run, Registry(tmp_path / "state" / "registry.json")
    )
    return Supply(manager, pool), manager


def _finish(supply: Supply, manager: MachineManager, *, interrupted: bool = False) -> list[str]:
    errors = supply.shutdown(interrupted=interrupted)
    manager.finish_process()
    manager.finish_run(unclaimed=SharedPool(manager.run.shared).leftovers())
    return errors


def _records(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "state" / "registry.json"
    return dict(json.loads(path.read_text())["machines"]) if path.exists() else {}


def _deleted(model: ModelOrbctl) -> list[str]:
    return [name for call in model.calls if call[0] == "delete" for name in call[2:]]


@pytest.mark.parametrize("pool", [0, 2, None], ids=["no-pool", "pool2", "auto"])
def test_the_pool_makes_exactly_the_machines_the_tests_need(
    model: ModelOrbctl, tmp_path: Path, pool: int | None
) -> None:
    model.add(FOREIGN)
    model.latency(clone=0.05, start=0.05)
    supply, manager = _run(model, tmp_path, pool)
    supply.plan([(SPEC, 5)])
    names = []
    for n in range(5):
        machine = supply.take(SPEC, "function", f"test_{n}")
        assert model.machines[machine.name]["state"] == "running"
        names.append(machine.name)
        supply.release(machine)
    assert len(set(names)) == 5  # a fresh machine per test
    assert _finish(supply, manager) == []
    assert model.count("create") == 1  # the base: every fresh machine is a clone of it
    assert model.count("clone") == 5  # never more than the tests need, pool or not
    assert set(model.machines) == {FOREIGN}  # nothing left, the user's machine untouched
    assert FOREIGN not in _deleted(model)
    assert sorted(_deleted(model)) == sorted({*_deleted(model)})  # each deleted once
    assert _records(tmp_path) == {}


def test_busy_clones_in_the_background_are_retried(model: ModelOrbctl, tmp_path: Path) -> None:
    model.fail_next("clone", BUSY, times=2)
    supply, manager = _run(model, tmp_path, 2)
    supply.plan([(SPEC, 3)])
    for n in range(3):
        supply.release(supply.take(SPEC, "function", f"test_{n}"))
    assert _finish(supply, manager) == []
    assert model.count("clone") == 3 + 2  # the two busy attempts, then the real ones
    assert model.machines == {} and _records(tmp_path) == {}


def test_a_permanent_error_in_the_background_reaches_the_test_once(
    model: ModelOrbctl, tmp_path: Path
) -> None:
    """The base's create fails for good in the warm-up thread: the test that takes a machine
    gets OrbStack's own words (no hang, no retry of a permanent error), nothing is left."""
    text = "[-32098] create 'x': make rootfs: image not found: {debian bookworm amd64 default}\n"
    model.fail_next("create", text)
    supply, manager = _run(model, tmp_path, 2)
    supply.plan([(SPEC, 3)])
    with pytest.raises(OrbctlError, match="image not found"):
        supply.take(SPEC, "function", "test_0")
    assert model.count("create") == 1
    _finish(supply, manager)
    assert model.machines == {} and _records(tmp_path) == {}


def test_machines_prepared_for_tests_that_never_ran_are_deleted(
    model: ModelOrbctl, tmp_path: Path
) -> None:
    """A run stopped after its first test (``-x``): the pool's machines made ahead for the
    other four are deleted at the run's end, and no more were made than the pool's depth."""
    model.add(FOREIGN, state="stopped")
    model.latency(clone=0.1)
    supply, manager = _run(model, tmp_path, 2)
    supply.plan([(SPEC, 5)])
    supply.release(supply.take(SPEC, "function", "test_0"))
    assert _finish(supply, manager) == []
    assert 1 <= model.count("clone") <= 1 + 2
    assert set(model.machines) == {FOREIGN} and _records(tmp_path) == {}


def test_every_machine_is_in_the_registry_while_it_exists(
    model: ModelOrbctl, tmp_path: Path
) -> None:
    """Ctrl-C while the pool prepares: background calls are aborted, and whatever the model
    holds of this run at that moment is recorded (the reaper or the run's end can find it);
    the run's end then removes it all."""
    model.latency(clone=0.5, start=0.3)
    supply, manager = _run(model, tmp_path, 2)
    supply.plan([(SPEC, 6)])
    supply.take(SPEC, "function", "test_0")  # the base exists and the pool is under way
    supply.shutdown(interrupted=True)
    assert set(model.machines) <= set(_records(tmp_path))  # nothing unrecorded
    manager.finish_process()
    manager.finish_run(unclaimed=SharedPool(manager.run.shared).leftovers())
    assert model.machines == {} and _records(tmp_path) == {}
