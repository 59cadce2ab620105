"""``Machine.wait_for_unit``, ``wait_for_port``, ``wait_until_succeeds``, ``wait_for_file`` on
simulator machines: each wait, each early failure and each timeout message.

What is waited for is started later by systemd itself (a transient timer, ``systemd-run
--on-active``), so a wait that returned without waiting would find nothing there.  A "fails at
once" test gives the wait a long timeout: a wait that waited it out would raise
``WaitTimeoutError``, not ``UnitFailedError``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pytest_orbstack import UnitFailedError, WaitTimeoutError
from pytest_orbstack.machine import Machine
from tests.conftest import SimHome, module_machine

LONG = 120.0


@pytest.fixture(scope="module")
def vm(sim_home: SimHome) -> Iterator[Machine]:
    yield from module_machine(sim_home, "wait")


def _unit(vm: Machine, body: str) -> str:
    name = f"orbwait-{uuid.uuid4().hex[:6]}.service"
    vm.run(["tee", f"/etc/systemd/system/{name}"], user="root", input=body, check=True)
    vm.run(["systemctl", "daemon-reload"], user="root", check=True)
    return name


def _later(vm: Machine, *argv: str, after: str = "1") -> None:
    """Run ``argv`` as root in the machine ``after`` seconds from now (a systemd timer)."""
    timer = ["systemd-run", "--quiet", f"--on-active={after}", "--timer-property=AccuracySec=10ms"]
    vm.run([*timer, *argv], user="root", check=True)


def test_wait_for_unit_waits_for_a_starting_unit(vm: Machine) -> None:
    unit = _unit(vm, "[Service]\nExecStartPre=/bin/sleep 2\nExecStart=/bin/sleep infinity\n")
    vm.run(["systemctl", "start", "--no-block", unit], user="root", check=True)
    assert vm.run(["systemctl", "is-active", unit]).stdout.strip() == "activating"
    vm.wait_for_unit(unit, timeout=LONG)
    assert vm.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
    vm.wait_for_unit(unit)  # already active: returns at once
    vm.run(["systemctl", "stop", unit], user="root", check=True)


def test_wait_for_unit_fails_at_once_with_status_and_journal(vm: Machine) -> None:
    unit = _unit(
        vm,
        "[Service]\nExecStartPre=/bin/sleep 1\n"
        "ExecStart=/bin/sh -c 'echo orb-unit-broke-here >&2; exit 3'\n",
    )
    vm.run(["systemctl", "start", "--no-block", unit], user="root", check=True)
    with pytest.raises(UnitFailedError) as info:
        vm.wait_for_unit(unit, timeout=LONG)
    text = str(info.value)
    assert f"unit {unit!r} entered state failed" in text
    assert "exit-code" in text
    assert "orb-unit-broke-here" in text  # the journal tail
    assert "Active: failed" in text  # systemctl status
    assert info.value.unit == unit and info.value.machine == vm.name


def test_wait_for_unit_unknown_and_inactive_units_fail_at_once(vm: Machine) -> None:
    with pytest.raises(UnitFailedError, match="load state not-found"):
        vm.wait_for_unit("orb-no-such-unit.service", timeout=LONG)
    unit = _unit(vm, "[Service]\nExecStart=/bin/sleep infinity\n")
    with pytest.raises(UnitFailedError, match="inactive and no job is pending"):
        vm.wait_for_unit(unit, timeout=LONG)


def test_wait_for_unit_timeout_shows_the_last_state(vm: Machine) -> None:
    unit = _unit(vm, "[Service]\nExecStartPre=/bin/sleep 60\nExecStart=/bin/sleep infinity\n")
    vm.run(["systemctl", "start", "--no-block", unit], user="root", check=True)
    try:
        with pytest.raises(WaitTimeoutError) as info:
            vm.wait_for_unit(unit, timeout=2)
        assert isinstance(info.value, TimeoutError)
        text = str(info.value)
        assert f"timed out after 2s waiting for unit {unit!r} to be active" in text
        assert "activating (start-pre" in text
    finally:
        vm.run(["systemctl", "stop", unit], user="root")


def _socket_unit(vm: Machine, listen: str) -> str:
    name = f"orbport-{uuid.uuid4().hex[:6]}"
    socket_unit = f"[Socket]\nListenStream={listen}\nAccept=yes\n"
    service = "[Service]\nExecStart=/bin/echo hello\nStandardInput=socket\n"
    for path, body in ((f"{name}.socket", socket_unit), (f"{name}@.service", service)):
        vm.run(["tee", f"/etc/systemd/system/{path}"], user="root", input=body, check=True)
    vm.run(["systemctl", "daemon-reload"], user="root", check=True)
    return f"{name}.socket"


def test_wait_for_port_inside_and_from_the_host(vm: Machine) -> None:
    sock = _socket_unit(vm, "18081")
    _later(vm, "systemctl", "start", sock)
    try:
        connect = ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/18081 && cat <&3"]
        assert not vm.run(connect).ok
        vm.wait_for_port(18081, timeout=LONG, from_host=True)
        assert vm.run(connect, check=True).stdout == "hello\n"
    finally:
        vm.run(["systemctl", "stop", sock], user="root")


def test_wait_for_port_timeouts(vm: Machine) -> None:
    with pytest.raises(WaitTimeoutError) as info:
        vm.wait_for_port(18082, timeout=1.5)
    assert "waiting for TCP port 18082 to listen" in str(info.value)
    assert "nothing listens on TCP port 18082" in str(info.value)

    sock = _socket_unit(vm, "127.0.0.1:18083")  # listens, but not on the machine's address
    vm.run(["systemctl", "start", sock], user="root", check=True)
    try:
        vm.wait_for_port(18083, timeout=LONG)
        with pytest.raises(WaitTimeoutError) as info:
            vm.wait_for_port(18083, timeout=3, from_host=True)
        text = str(info.value)
        assert "TCP port 18083 to be reachable from the host" in text
        assert f"connecting from the host to {vm.ip}:18083" in text
    finally:
        vm.run(["systemctl", "stop", sock], user="root")


def test_wait_until_succeeds_returns_the_successful_run(vm: Machine) -> None:
    marker = f"/tmp/orb-until-{uuid.uuid4().hex[:6]}"
    _later(vm, "sh", "-c", f"echo ready > {marker}")
    result = vm.wait_until_succeeds(["cat", marker], timeout=LONG)
    assert result.ok and result.stdout == "ready\n"
    assert vm.wait_until_succeeds(f"test -s {marker} && echo 'via sh'").stdout == "via sh\n"


def test_wait_until_succeeds_timeout_shows_the_last_output(vm: Machine) -> None:
    with pytest.raises(WaitTimeoutError) as info:
        vm.wait_until_succeeds(["sh", "-c", "echo attempt-said-this; exit 4"], timeout=1.5)
    text = str(info.value)
    assert "timed out after 1.5s waiting for command ['sh', '-c'," in text
    assert "exited 4" in text and "attempt-said-this" in text
    assert info.value.machine == vm.name and info.value.timeout == 1.5


def test_wait_for_file(vm: Machine) -> None:
    path = f"/tmp/orb file {uuid.uuid4().hex[:6]} 'quoted'"
    _later(vm, "touch", path)
    vm.wait_for_file(path, timeout=LONG)
    assert vm.run(["test", "-e", path]).ok
    with pytest.raises(WaitTimeoutError, match=r"waiting for file '/tmp/orb-never' to exist"):
        vm.wait_for_file("/tmp/orb-never", timeout=1)


def test_bad_wait_arguments(vm: Machine) -> None:
    with pytest.raises(ValueError, match="timeout"):
        vm.wait_for_file("/tmp", timeout=0)
    with pytest.raises(ValueError, match="port"):
        vm.wait_for_port(70000)
    with pytest.raises(ValueError, match="unit"):
        vm.wait_for_unit("--all")
