"""Registry ownership and the reaper, against the fake orbctl (no machines needed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orbstack.cleanup import reap
from pytest_orbstack.registry import Owner, Record, Registry
from pytest_orbstack.retry import RetryPolicy

from .conftest import FakeOrbctl

POLICY = RetryPolicy(attempts=2, initial=0, jitter=0, poll_interval=0.01)


def dead_owner() -> Owner:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    import psutil

    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return Owner(pid=proc.pid, started=started, host=socket.gethostname())


def listing(*names: str) -> str:
    return json.dumps(
        [{"id": f"ID-{n}", "name": n, "image": {}, "config": {}, "state": "running"} for n in names]
    )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry.json")


def test_only_recorded_machines_of_dead_owners_are_deleted(
    fake: FakeOrbctl, registry: Registry
) -> None:
    registry.register(Record("orbpt-dead-1", "dead", "function", dead_owner(), state="ready"))
    registry.register(Record("orbpt-live-1", "live", "function", Owner.current(), state="ready"))
    registry.register(
        Record("orbpt-kept-1", "dead", "function", dead_owner(), state="kept", kept=True)
    )
    # the machine list also holds a foreign look-alike that has no record
    fake.expect("list", stdout=listing("orbpt-dead-1", "orbpt-live-1", "orbpt-kept-1", "orbpt-x-1"))
    fake.expect("delete")
    assert reap(fake.client(), registry, POLICY) == ["orbpt-dead-1"]
    assert fake.calls[-1] == ["delete", "-f", "orbpt-dead-1"]
    assert {r.name for r in registry.all()} == {"orbpt-live-1", "orbpt-kept-1"}


def test_a_machine_whose_id_changed_is_not_ours(fake: FakeOrbctl, registry: Registry) -> None:
    rec = Record("orbpt-dead-2", "dead", "function", dead_owner(), state="ready")
    rec.machine_id = "SOMEONE-ELSES"
    registry.register(rec)
    fake.expect("list", stdout=listing("orbpt-dead-2"))
    assert reap(fake.client(), registry, POLICY) == []
    assert len(fake.calls) == 1  # no delete


def test_a_create_that_may_still_finish_is_kept_until_the_grace_ends(
    fake: FakeOrbctl, registry: Registry
) -> None:
    registry.register(Record("orbpt-dead-3", "dead", "function", dead_owner(), state="creating"))
    registry.register(Record("orbpt-dead-4", "dead", "function", dead_owner(), state="ready"))
    fake.expect("list", stdout="[]")
    assert reap(fake.client(), registry, POLICY, grace=600) == []
    assert [r.name for r in registry.all()] == ["orbpt-dead-3"]  # the ready one was simply gone
    fake.expect("list", stdout="[]")
    reap(fake.client(), registry, POLICY, grace=0)
    assert registry.all() == []


def test_a_recycled_pid_is_not_the_owner() -> None:
    me = Owner.current()
    assert me.alive()
    assert not Owner(pid=me.pid, started=me.started - 3600, host=me.host).alive()
    assert Owner(pid=me.pid, started=me.started, host="another-host").alive()  # cannot tell
