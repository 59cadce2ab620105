"""Retry policies against the fake orbctl: what is retried, what is not, and ambiguous creates."""

from __future__ import annotations

import json
import time

import pytest

from pytest_orbstack.errors import (
    MachineExistsError,
    OrbctlError,
    OrbctlTimeoutError,
    PermanentError,
    TransientError,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.retry import (
    DeadlineExceeded,
    RetryPolicy,
    clone_machine,
    create_machine,
    delete_machines,
    start_machine,
)

from .conftest import FakeOrbctl


def info(name: str, state: str = "running", ip4: str | None = "192.168.139.10") -> str:
    data: dict[str, object] = {
        "record": {
            "id": "01K2G8TY5GM9C3CN95KCB4ZG8B",
            "name": name,
            "image": {"distro": "debian", "version": "bookworm", "arch": "amd64"},
            "config": {"isolated": False, "default_username": "me"},
            "builtin": False,
            "state": state,
        },
        "disk_size": None,
    }
    if ip4 and state == "running":
        data["ip4"] = ip4
    return json.dumps(data)


NOT_FOUND = "[-32098] machine not found: '{}'\n"
MISSING_IP = "[-32098] create 'm': setup: machine didn't start in 30s (missing IP address)\n"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(
        attempts=4,
        initial=0.5,
        maximum=4,
        jitter=0.1,
        deadline=60,
        poll_interval=0.01,
        sleep=sleeps.append,
    )


def test_transient_then_success(fake: FakeOrbctl, policy: RetryPolicy, sleeps: list[float]) -> None:
    fake.expect("create", rc=1, stderr=MISSING_IP)
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("m"))  # the server removed the half-made one
    fake.expect("create")
    fake.expect("info", stdout=info("m"))
    got = create_machine(fake.client(), policy, "debian", "m")
    assert got.state == "running" and got.ip4
    assert [c[0] for c in fake.calls] == ["create", "info", "create", "info"]
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 0.6  # one backoff, with jitter


def test_backoff_grows_exponentially(
    fake: FakeOrbctl, policy: RetryPolicy, sleeps: list[float]
) -> None:
    for _ in range(3):
        fake.expect(
            "start", rc=1, stderr="[-32098] cannot start: operations are in progress: clone"
        )
    fake.expect("start")
    start_machine(fake.client(), policy, "m")
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2] <= 4.1
    assert sleeps[1] >= 1.0 and sleeps[2] >= 2.0


@pytest.mark.parametrize(
    "stderr",
    [
        "[-32098] create 'm': invalid machine name 'm'",
        "Error: invalid distro: nope",
        "[-32098] create 'm': make rootfs: image not found: {ubuntu 99.99 amd64 default}",
        "[-32098] create 'm': cloud-init not supported for 'archlinux'",
    ],
)
def test_permanent_error_after_exactly_one_call(
    fake: FakeOrbctl, policy: RetryPolicy, sleeps: list[float], stderr: str
) -> None:
    fake.expect("create", rc=1, stderr=stderr)
    with pytest.raises(PermanentError) as exc:
        create_machine(fake.client(), policy, "debian", "m")
    assert exc.value.stderr == stderr  # the exact text reaches the user
    assert len(fake.calls) == 1 and sleeps == []


def test_exists_on_first_call_is_never_adopted(fake: FakeOrbctl, policy: RetryPolicy) -> None:
    fake.expect("create", rc=1, stderr="[-32098] create 'm': machine already exists: 'm'")
    with pytest.raises(MachineExistsError):
        create_machine(fake.client(), policy, "debian", "m")
    assert len(fake.calls) == 1


def test_timed_out_create_inspects_state_instead_of_creating_again(
    fake: FakeOrbctl, policy: RetryPolicy
) -> None:
    fake.expect("create", sleep=30)  # the client is killed; OrbStack goes on creating
    fake.expect("info", stdout=info("m", "creating"))
    fake.expect("info", stdout=info("m", "provisioning"))
    fake.expect("info", stdout=info("m", "running"))
    got = create_machine(fake.client(), policy, "debian", "m", timeout=1)
    assert got.state == "running"
    assert [c[0] for c in fake.calls] == ["create", "info", "info", "info"]


def test_timed_out_create_that_vanished_is_created_again(
    fake: FakeOrbctl, policy: RetryPolicy
) -> None:
    fake.expect("create", sleep=30)
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("m"))
    fake.expect("create")
    fake.expect("info", stdout=info("m"))
    assert create_machine(fake.client(), policy, "debian", "m", timeout=1).state == "running"
    assert [c[0] for c in fake.calls] == ["create", "info", "create", "info"]


def test_exists_after_timeout_is_ours(fake: FakeOrbctl, policy: RetryPolicy) -> None:
    # create timed out; info briefly failed transiently so we created again -> already exists
    fake.expect("create", sleep=30)
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("m"))
    fake.expect("create", rc=1, stderr="[-32098] create 'm': machine already exists: 'm'")
    fake.expect("info", stdout=info("m"))
    assert create_machine(fake.client(), policy, "debian", "m", timeout=1).state == "running"


def test_deadline_bounds_the_whole_operation(fake: FakeOrbctl) -> None:
    policy = RetryPolicy(attempts=50, initial=0.3, maximum=0.3, jitter=0, deadline=1.0)
    for _ in range(50):
        fake.expect(
            "start", rc=1, stderr="[-32098] cannot start: operations are in progress: clone"
        )
    started = time.monotonic()
    with pytest.raises(TransientError, match="operations are in progress"):
        start_machine(fake.client(), policy, "m")
    assert time.monotonic() - started < 5
    assert 2 <= len(fake.calls) < 10


def test_waiting_for_state_has_a_deadline(fake: FakeOrbctl) -> None:
    policy = RetryPolicy(attempts=1, deadline=0.5, poll_interval=0.05)
    fake.expect("create", sleep=30)
    for _ in range(200):
        fake.expect("info", stdout=info("m", "creating"))
    with pytest.raises((DeadlineExceeded, OrbctlTimeoutError)):
        create_machine(fake.client(), policy, "debian", "m", timeout=0.5)


def test_clone_leaves_machine_stopped_and_retries_busy_source(
    fake: FakeOrbctl, policy: RetryPolicy
) -> None:
    fake.expect("clone", rc=1, stderr="[-32098] cannot clone: operations are in progress: clone")
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("c"))
    fake.expect("clone")
    assert clone_machine(fake.client(), policy, "tpl", "c") is None
    # after the busy source: one look (not there, so cloning again is safe), then the clone;
    # a clone that succeeded is not inspected (clone is synchronous, the machine is stopped)
    assert fake.calls == [["clone", "tpl", "c"], ["info", "-f", "json", "c"], ["clone", "tpl", "c"]]


def test_a_clone_that_timed_out_is_inspected_not_repeated(
    fake: FakeOrbctl, policy: RetryPolicy
) -> None:
    fake.expect("clone", sleep=3)
    fake.expect("info", stdout=info("c", "stopped"))
    got = clone_machine(fake.client(), policy, "tpl", "c", timeout=1)
    assert got is not None and got.state == "stopped"
    assert [c[0] for c in fake.calls] == ["clone", "info"]


def test_delete_skips_names_already_gone(fake: FakeOrbctl, policy: RetryPolicy) -> None:
    fake.expect("delete", rc=1, stderr=NOT_FOUND.format("a"))
    fake.expect("list", stdout=json.dumps([json.loads(info("b"))["record"]]))
    fake.expect("delete")
    assert delete_machines(fake.client(), policy, ["a", "b"]) == ["b"]
    assert fake.calls == [["delete", "-f", "a", "b"], ["list", "-f", "json"], ["delete", "-f", "b"]]


def test_delete_waits_for_a_machine_still_creating(fake: FakeOrbctl, policy: RetryPolicy) -> None:
    fake.expect("delete", rc=1, stderr="[-32098] cannot transition from creating to deleting")
    fake.expect("info", stdout=info("a", "creating"))
    fake.expect("info", stdout=info("a", "running"))
    fake.expect("delete")
    assert delete_machines(fake.client(), policy, ["a"]) == ["a"]


def test_unknown_errors_are_not_retried(fake: FakeOrbctl, policy: RetryPolicy) -> None:
    fake.expect("start", rc=1, stderr="[-32098] something nobody has seen before about setup")
    with pytest.raises(OrbctlError):
        start_machine(fake.client(), policy, "m")
    assert len(fake.calls) == 1


def test_commands_inside_machines_are_never_retried(fake: FakeOrbctl) -> None:
    fake.expect("run", rc=1, stderr="curl: (6) Could not resolve host: network timeout\n")
    result = Machine("m", fake.client()).run(["curl", "http://example"])
    assert result.returncode == 1 and not result.ok
    assert len(fake.calls) == 1


def test_policy_validates_its_figures() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(deadline=0)


# -- the churn wedge (docs/orbctl-contract.md §16, orbstack#2688) ----------------------------


def missing_ip(name: str) -> str:
    return f"[-32098] create '{name}': setup: machine didn't start in 30s (missing IP address)\n"


def test_one_machine_failing_twice_with_missing_ip_is_still_retried(
    fake: FakeOrbctl, policy: RetryPolicy
) -> None:
    for _ in range(2):
        fake.expect("create", rc=1, stderr=missing_ip("a"))
        fake.expect("info", rc=1, stderr=NOT_FOUND.format("a"))
    fake.expect("create")
    fake.expect("info", stdout=info("a"))
    assert create_machine(fake.client(), policy, "debian", "a").state == "running"
    assert policy.missing_ip.failures() == []  # a machine started: the record is cleared


def test_one_machine_failing_three_times_in_a_row_is_given_up(
    fake: FakeOrbctl, policy: RetryPolicy
) -> None:
    for _ in range(3):
        fake.expect("create", rc=1, stderr=missing_ip("a"))
        fake.expect("info", rc=1, stderr=NOT_FOUND.format("a"))
    with pytest.raises(PermanentError, match="3 times since a machine last started"):
        create_machine(fake.client(), policy, "debian", "a")
    assert [c[0] for c in fake.calls].count("create") == 3  # not the policy's 4


def test_machines_of_different_names_failing_wedge_the_run(
    fake: FakeOrbctl, policy: RetryPolicy
) -> None:
    from pytest_orbstack.errors import OrbStackWedgedError

    client = fake.client()
    fake.expect("create", rc=1, stderr=missing_ip("a"))
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("a"))
    fake.expect("create", rc=1, stderr=missing_ip("a"))
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("a"))
    fake.expect("create")
    fake.expect("info", stdout=info("a"))
    create_machine(client, policy, "debian", "a")  # a transient failure, then success

    fake.expect("create", rc=1, stderr=missing_ip("b"))
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("b"))
    fake.expect("create", rc=1, stderr=missing_ip("b"))
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("b"))
    fake.expect("create", rc=1, stderr=missing_ip("b"))
    with pytest.raises(PermanentError):
        create_machine(client, policy, "debian", "b")  # one machine: not (yet) a wedge
    fake.expect("clone", rc=1, stderr=missing_ip("c"))
    fake.expect("info", rc=1, stderr=NOT_FOUND.format("c"))
    fake.expect("clone")
    clone_machine(client, policy, "base", "c")  # two machines: not yet either (retried)
    fake.expect("clone", rc=1, stderr=missing_ip("c2"))
    with pytest.raises(OrbStackWedgedError) as wedge:
        clone_machine(client, policy, "base", "c2")
    text = str(wedge.value)
    assert "stopped giving machines addresses" in text and "orbstack/issues/2688" in text
    assert "orbctl stop && orbctl start' does not clear it" in text
    assert "orbctl delete NAME" in text and "b, c, c2" in text
    calls = len(fake.calls)
    for later in ("d", "e"):  # every machine still to come fails at once: no orbctl call
        with pytest.raises(OrbStackWedgedError):
            create_machine(client, policy, "debian", later)
    with pytest.raises(OrbStackWedgedError):
        start_machine(client, policy, "f")
    assert len(fake.calls) == calls


def test_the_missing_ip_record_is_shared_by_the_runs_processes(tmp_path: object) -> None:
    """Two records on one shared directory (two xdist workers) see each other's failures, and a
    start anywhere clears them; concurrent writers lose no entry (lock + atomic replace)."""
    import multiprocessing
    from pathlib import Path

    from pytest_orbstack.coordination import MissingIpRecord, SharedDir
    from pytest_orbstack.policy import wedged

    shared = SharedDir(Path(str(tmp_path)))
    gw0, gw1 = MissingIpRecord(shared), MissingIpRecord(shared)
    gw0.failed("orbpt-x-gw0-1")
    gw1.failed("orbpt-x-gw1-1")
    assert not wedged(gw1.failed("orbpt-x-gw1-2"))
    assert wedged(gw0.failed("orbpt-x-gw0-2"))
    gw1.started()
    assert gw0.failures() == []
    procs = [
        multiprocessing.get_context("spawn").Process(target=_record_many, args=(str(tmp_path), w))
        for w in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert sorted(gw0.failures()) == sorted(f"w{w}-{i}" for w in range(3) for i in range(20))


def _record_many(path: str, worker: int) -> None:
    from pathlib import Path

    from pytest_orbstack.coordination import MissingIpRecord, SharedDir

    record = MissingIpRecord(SharedDir(Path(path)))
    for i in range(20):
        record.failed(f"w{worker}-{i}")
