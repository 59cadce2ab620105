"""The orbctl client against a tiny fake executable (a real subprocess, no mocks)."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest

from pytest_orbstack.errors import (
    MachineNotFoundError,
    OrbctlTimeoutError,
    OrbStackUnavailableError,
    PermanentError,
    TransientError,
    UnsupportedSettingError,
)
from pytest_orbstack.orbctl import CreateOptions, Orbctl, resolve_executable

from .conftest import FakeOrbctl

INFO = {
    "record": {
        "id": "01K2G8TY5GM9C3CN95KCB4ZG8B",
        "name": "m1",
        "image": {"distro": "debian", "version": "bookworm", "arch": "amd64", "variant": "default"},
        "config": {"isolated": False, "default_username": "me"},
        "builtin": False,
        "state": "running",
    },
    "disk_size": 1,
    "ip4": "192.168.139.10",
}


def test_lifecycle_argv_is_explicit(fake: FakeOrbctl) -> None:
    for cmd in ["create", "clone", "start", "stop", "delete", "rename"]:
        fake.expect(cmd)
    fake.expect("info", stdout=json.dumps(INFO)).expect("list", stdout="[]\n")
    client = fake.client()
    client.create(
        "debian:bookworm", "m1", CreateOptions(arch="amd64", user="me", user_data="/tmp/u.yaml")
    )
    client.clone("m1", "m2")
    client.start("m1")
    client.stop("m1", "m2")
    client.delete("m1", "m2")
    client.rename("m2", "m3")
    assert client.info("m1").ip4 == "192.168.139.10"
    assert client.list() == []
    assert fake.calls == [
        ["create", "-a", "amd64", "-u", "me", "-c", "/tmp/u.yaml", "debian:bookworm", "m1"],
        ["clone", "m1", "m2"],
        ["start", "m1"],
        ["stop", "m1", "m2"],
        ["delete", "-f", "m1", "m2"],
        ["rename", "m2", "m3"],
        ["info", "-f", "json", "m1"],
        ["list", "-f", "json"],
    ]


@pytest.mark.parametrize("method", ["stop", "delete", "start"])
def test_refuses_to_act_on_everything(fake: FakeOrbctl, method: str) -> None:
    with pytest.raises(ValueError, match="without machine names"):
        getattr(fake.client(), method)()
    assert fake.calls == []


def test_shell_metacharacters_are_single_argv_elements(fake: FakeOrbctl) -> None:
    nasty = ["echo", "$(touch /tmp/pwned)", "a; rm -rf /", "`id`", "it's", '"q"', "a b", "*"]
    fake.expect("run", stdout="out\n", stderr="err\n", rc=3)
    call = fake.client().run("m-1", nasty, user="root", workdir="/tmp")
    assert fake.calls == [["run", "-m", "m-1", "-u", "root", "-w", "/tmp", *nasty]]
    assert call.returncode == 3
    assert call.stdout == b"out\n" and call.stderr == b"err\n"


def test_run_input_is_passed_on_stdin(fake: FakeOrbctl) -> None:
    fake.expect("run")
    fake.client().run("m1", ["cat"], input=b"hello\n")
    assert fake.stdins == ["hello\n"]


def test_run_never_emits_double_dash_and_rejects_flag_like_command(fake: FakeOrbctl) -> None:
    with pytest.raises(ValueError, match="flag"):
        fake.client().run("m1", ["--version"])
    fake.expect("run")
    fake.client().run("m1", ["ls", "--", "-x"])
    assert fake.calls == [["run", "-m", "m1", "ls", "--", "-x"]]


def test_stdin_is_devnull_without_input(fake: FakeOrbctl) -> None:
    fake.expect("list", stdout="[]")
    fake.client().list()
    assert fake.stdins == [""]


def test_errors_are_typed(fake: FakeOrbctl) -> None:
    fake.expect("info", rc=1, stderr="[-32098] machine not found: 'nope'\n")
    fake.expect(
        "create",
        rc=1,
        stderr="[-32098] create 'x': setup: machine didn't start in 30s (missing IP address)\n",
    )
    fake.expect("create", rc=1, stderr="Error: invalid distro: foo\nUsage:\n  orbctl create\n")
    client = fake.client()
    with pytest.raises(MachineNotFoundError) as nf:
        client.info("nope")
    assert nf.value.returncode == 1
    assert nf.value.argv[1:] == ["info", "-f", "json", "nope"]
    with pytest.raises(TransientError, match="missing IP address"):
        client.create("debian", "x")
    with pytest.raises(PermanentError, match="invalid distro: foo"):
        client.create("foo", "x")


def test_timeout_kills_the_whole_process_group(fake: FakeOrbctl) -> None:
    fake.expect("create", sleep=60, spawn_sleep=60)
    client = fake.client()
    started = time.monotonic()
    with pytest.raises(OrbctlTimeoutError) as exc:
        client.create("debian", "slow", timeout=1.5)
    assert time.monotonic() - started < 20
    assert exc.value.timeout == 1.5
    grandchild = int((fake.dir / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    alive = psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != "zombie"
    assert not alive, "the grandchild of a timed-out orbctl survived"


def test_missing_executable_is_unavailable(tmp_path: os.PathLike[str]) -> None:
    client = Orbctl(os.path.join(tmp_path, "no-such-orbctl"))
    with pytest.raises(OrbStackUnavailableError, match="cannot run"):
        client.list()


def test_status_and_version(fake: FakeOrbctl) -> None:
    fake.expect("status", stdout="Running\n")
    fake.expect("status", rc=1, stdout="Stopped\n")
    fake.expect("status", rc=2, stdout="Starting\n")
    fake.expect("version", stdout="Version: 2.0.5 (19905)\nCommit: abc (v2.0.5)\n")
    client = fake.client()
    assert [client.status() for _ in range(3)] == ["Running", "Stopped", "Starting"]
    assert client.version() == "2.0.5"


def test_resolve_executable(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    exe = os.path.join(tmp_path, "my-orbctl")
    with open(exe, "w") as fh:
        fh.write("#!/bin/sh\n")
    os.chmod(exe, 0o755)
    assert resolve_executable(exe) == exe
    monkeypatch.setenv("ORBSTACK_ORBCTL", exe)
    assert resolve_executable() == exe
    monkeypatch.setenv("ORBSTACK_ORBCTL", os.path.join(tmp_path, "missing"))
    assert resolve_executable() is None
    monkeypatch.delenv("ORBSTACK_ORBCTL")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve_executable() is None  # no orbctl on PATH


def test_observer_sees_every_call(fake: FakeOrbctl) -> None:
    seen: list[tuple[list[str], int | None]] = []
    fake.expect("list", stdout="[]").expect(
        "delete", rc=1, stderr="[-32098] machine not found: 'a'"
    )
    client = fake.client(observer=lambda argv, rc, secs: seen.append((list(argv[1:]), rc)))
    client.list()
    with pytest.raises(MachineNotFoundError):
        client.delete("a")
    assert seen == [(["list", "-f", "json"], 0), (["delete", "-f", "a"], 1)]


def test_abort_kills_calls_in_flight_and_refuses_new_ones(fake: FakeOrbctl) -> None:
    import threading

    from pytest_orbstack.errors import OrbctlAbortedError

    fake.expect("create", sleep=60)
    client = fake.client()
    errors: list[BaseException] = []

    def hung() -> None:
        try:
            client.create("debian", "hung", timeout=120)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    deadline = time.monotonic() + 60  # generous: a loaded CI machine starts processes slowly
    while not fake.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    client.abort()
    thread.join(timeout=30)  # the fake create sleeps 60 s: only a kill ends it this soon
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], OrbctlAbortedError)
    with pytest.raises(OrbctlAbortedError):
        client.list()
    assert len(fake.calls) == 1  # the refused call never ran
    fresh = client.copy()  # a copy is not aborted
    fake.expect("list", stdout="[]")
    assert fresh.list() == []


def test_delete_takes_names_never_ids(fake: FakeOrbctl) -> None:
    """docs/orbctl-contract.md §16: ``orbctl delete <ID>`` panics on 2.2.3; only NAME works."""
    client = fake.client()
    with pytest.raises(ValueError, match="looks like a machine id"):
        client.delete("orbpt-a1b2c3-main-1", "01K2G8TY5GM9C3CN95KCB4ZG8B")
    assert fake.calls == []  # refused before anything ran
    fake.expect("delete")
    client.delete("orbpt-a1b2c3-main-1")
    assert fake.calls[0] == ["delete", "-f", "orbpt-a1b2c3-main-1"]


def _stopped_info() -> str:
    record = {**INFO["record"], "state": "stopped"}  # type: ignore[dict-item]
    return json.dumps({"record": record, "disk_size": 1})


def test_addresses_are_judged_from_the_version_not_a_stopped_machine(fake: FakeOrbctl) -> None:
    """A stopped clone's info has no ip4 on 2.x (§16): it must not make a 2.x OrbStack look like
    one that never reports addresses."""
    fake.expect("info", stdout=_stopped_info())
    fake.expect("version", stdout="Version: 2.2.3 (2020300)\nCommit: abc (v2.2.3)\n")
    client = fake.client()
    client.info("m1")
    assert client.reports_addresses is True
    assert client.reports_addresses is True  # asked once
    assert [c[0] for c in fake.calls] == ["info", "version"]


def test_an_old_orbstack_reports_addresses_once_a_running_machine_shows_one(
    fake: FakeOrbctl,
) -> None:
    fake.expect("version", stdout="Version: 1.11.3 (1110300)\nCommit: abc (v1.11.3)\n")
    fake.expect("info", stdout=_stopped_info())
    fake.expect("info", stdout=json.dumps(INFO))
    client = fake.client()
    assert client.reports_addresses is False
    client.info("m1")
    assert client.reports_addresses is False  # a stopped machine says nothing either way
    client.info("m1")
    assert client.reports_addresses is True


def test_machine_ip_waits_for_an_address_that_lags_start(fake: FakeOrbctl) -> None:
    from pytest_orbstack.machine import Machine

    lagging = json.dumps({k: v for k, v in INFO.items() if k != "ip4"})
    fake.expect("version", stdout="Version: 2.2.3 (2020300)\nCommit: abc (v2.2.3)\n")
    for _ in range(20):  # 4 s of polling: longer than the wait for an OrbStack of unknown age
        fake.expect("info", stdout=lagging)
    fake.expect("info", stdout=json.dumps(INFO))
    machine = Machine(name="m1", client=fake.client())
    assert machine.ip == "192.168.139.10"


@pytest.mark.parametrize(
    ("version", "wanted", "expected"),
    [("2.2.3", (2, 0), True), ("2.0.0", (2, 0), True), ("1.11.3", (2, 0), False),
     ("2.1.9", (2, 2), False), ("10.0", (2, 2), True), ("dev", (2, 0), False)],
)  # fmt: skip
def test_version_at_least(version: str, wanted: tuple[int, ...], expected: bool) -> None:
    from pytest_orbstack.orbctl import version_at_least

    assert version_at_least(version, wanted) is expected


SETTINGS = CreateOptions(cpus=2, memory_mib=1024)


@pytest.mark.parametrize("version", ["2.1.2 (2010200)", "1.11.3 (1110300)"])
def test_settings_on_an_orbstack_older_than_2_2_are_refused_before_the_call(
    fake: FakeOrbctl, version: str
) -> None:
    fake.expect("version", stdout=f"Version: {version}\nCommit: abc\n")
    client = fake.client()
    with pytest.raises(UnsupportedSettingError) as info:
        client.create("debian", "m1", SETTINGS)
    short = version.split()[0]
    assert f"this OrbStack ({short}) does not support per-machine settings" in str(info.value)
    assert "OrbStack 2.2 or later" in str(info.value)
    with pytest.raises(UnsupportedSettingError):
        client.set_machine_config("m1", "cpu", "2")
    assert fake.calls == [["version"]]  # asked once; neither create nor config set ran


@pytest.mark.parametrize("version", ["2.2.3 (2020300)", "dev"])
def test_settings_reach_create_on_2_2_or_an_unknown_version(fake: FakeOrbctl, version: str) -> None:
    fake.expect("version", stdout=f"Version: {version}\n").expect("create").expect("config")
    client = fake.client()
    client.create("debian", "m1", SETTINGS)
    client.set_machine_config("m1", "memory_mib", "1024")
    assert fake.calls == [
        ["version"],
        ["create", "--cpus", "2", "--memory", "1G", "debian", "m1"],
        ["config", "set", "machine.m1.memory_mib", "1024"],
    ]


def test_a_create_without_settings_does_not_ask_the_version(fake: FakeOrbctl) -> None:
    fake.expect("create")
    fake.client().create("debian", "m1", CreateOptions(user="me"))
    assert fake.calls == [["create", "-u", "me", "debian", "m1"]]


def test_a_create_rejecting_a_setting_is_one_clear_error(fake: FakeOrbctl) -> None:
    fake.expect("version", stdout="Version: dev\n")
    fake.expect("create", rc=1, stderr="Error: unknown flag: --cpus\nUsage:\n  orbctl create\n")
    with pytest.raises(UnsupportedSettingError) as info:
        fake.client().create("debian", "m1", SETTINGS)
    text = str(info.value)
    assert "does not support per-machine settings (unknown flag: --cpus)" in text
    assert "Usage:" not in text
