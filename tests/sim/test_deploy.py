"""Deploy helpers (``run_deploy``, ``assert_idempotent``, ``Machine.deploy``) on simulator machines.

The deploy files live in ``tests/data/deploys``.  Results are checked in the machine itself.
apt runs once (``test_apt_package_is_installed``), against deb.debian.org.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest

from pytest_orbstack.deploy import (
    DeployError,
    IdempotenceError,
    assert_idempotent,
    run_deploy,
)
from pytest_orbstack.machine import Machine
from tests.conftest import SimHome, module_machine, read, stat

DEPLOYS = Path(__file__).resolve().parent.parent / "data" / "deploys"
WEIRD_DIR = "/tmp/weird dir 'single' \"double\" $HOME; echo pwned"


@pytest.fixture(scope="module")
def vm(sim_home: SimHome) -> Iterator[Machine]:
    yield from module_machine(sim_home, "dep")


def test_basic_deploy_changes_the_machine_then_is_idempotent(vm: Machine) -> None:
    first = vm.deploy(DEPLOYS / "basic.py", greeting="bonjour")
    assert first.ok
    assert first.changed
    assert [op.name for op in first.operations] == [
        "Create user",
        "Upload motd from a path to a root-owned destination",
        "Upload from StringIO",
        "Render app.conf",
        "Ensure a line in a root-owned file",
        "Create a directory with metacharacters in its name",
        "Upload into the metacharacter directory",
    ]
    assert all(op.changed for op in first.operations)

    assert vm.run(["id", "-u", "alice"]).ok
    assert vm.run(["getent", "passwd", "alice"], check=True).stdout.strip().endswith("/bin/bash")
    assert read(vm, "/etc/orb-test-motd") == "Welcome to an OrbStack test machine.\n"
    assert stat(vm, "/etc/orb-test-motd") == "root root 644"
    assert read(vm, "/tmp/orb-stringio.txt") == "stringio content ünïcode\n"
    conf = read(vm, "/etc/orb-test-app.conf")
    assert "greeting = bonjour\n" in conf
    assert "user = alice\n" in conf
    assert f"# rendered for @orb/{vm.name}\n" in conf
    assert stat(vm, "/etc/orb-test-app.conf") == "root alice 640"
    assert read(vm, "/etc/orb-test-lines.conf").splitlines() == ["managed = yes"]
    assert read(vm, f"{WEIRD_DIR}/file 'with' $quotes; and spaces.txt") == "weird\n"

    second = vm.assert_idempotent(DEPLOYS / "basic.py", greeting="bonjour")
    assert not second.changed
    assert len(second.operations) == len(first.operations)

    # Different data: only the template changes.
    third = vm.deploy(DEPLOYS / "basic.py", greeting="salut")
    assert [op.name for op in third.changed_operations] == ["Render app.conf"]
    assert "greeting = salut\n" in read(vm, "/etc/orb-test-app.conf")


def test_apt_package_is_installed(vm: Machine) -> None:
    result = run_deploy([vm], DEPLOYS / "apt_jq.py")[vm.name]
    assert result.ok
    out = vm.run(["jq", "-n", "--arg", "x", "y", "{x: $x}"], check=True).stdout
    assert out.replace(" ", "").replace("\n", "") == '{"x":"y"}'
    assert_idempotent(vm, DEPLOYS / "apt_jq.py")


def test_non_idempotent_deploy_fails_naming_the_operation(vm: Machine) -> None:
    vm.deploy(DEPLOYS / "non_idempotent.py")
    with pytest.raises(IdempotenceError) as info:
        vm.assert_idempotent(DEPLOYS / "non_idempotent.py")
    err = info.value
    assert isinstance(err, AssertionError)
    assert "Append a timestamp" in str(err)
    assert "Stable directory" not in str(err)
    assert [op.name for op in err.changed_operations] == ["Append a timestamp"]
    assert len(read(vm, "/tmp/orb-stamps").splitlines()) == 2


def test_failing_operation_raises_deploy_error_with_stderr(vm: Machine) -> None:
    with pytest.raises(DeployError) as info:
        vm.deploy(DEPLOYS / "failing.py")
    err = info.value
    message = str(err)
    assert "Fails on purpose" in message
    assert "intentional failure: no such widget" in message
    assert [op.name for op in err.failed_operations] == ["Fails on purpose"]
    result = err.results[vm.name]
    assert result.operation("Works").success
    assert [op.name for op in result.skipped_operations] == ["Never reached"]
    assert vm.run(["test", "-e", "/tmp/orb-never-reached"]).returncode == 1


def test_deploy_several_machines_at_once(vm: Machine, sim_home) -> None:  # type: ignore[no-untyped-def]
    client = sim_home.client()
    other_name = sim_home.unique_name("dep2")
    client.create("debian:bookworm", other_name)
    other = Machine(other_name, client)
    try:

        def deploy() -> None:
            from pyinfra import host
            from pyinfra.operations import files

            files.put(
                name="per-host file",
                src=StringIO(f"deployed to {host.data.orb_name}\n"),
                dest="/etc/orb-multi.txt",
                _sudo=True,
            )

        results = run_deploy([vm, other], deploy)
        assert sorted(results) == sorted([vm.name, other.name])
        assert all(r.ok and r.changed for r in results.values())
        again = run_deploy([vm, other], deploy)
        assert not any(r.changed for r in again.values())
        for machine in (vm, other):
            assert read(machine, "/etc/orb-multi.txt") == f"deployed to {machine.name}\n"
    finally:
        client.delete(other_name)


def test_deploys_run_as_the_default_user_unless_sudo_or_orb_user(
    vm: Machine, tmp_path: Path
) -> None:
    deploy = tmp_path / "whoami.py"
    deploy.write_text(
        "from pyinfra import host\n"
        "from pyinfra.operations import server\n"
        "server.shell(name='who', commands=['whoami > /tmp/who-' + host.data.tag])\n"
    )
    default_user = vm.run(["id", "-un"], check=True).stdout.strip()
    assert default_user != "root"
    vm.deploy(deploy, tag="plain")
    assert read(vm, "/tmp/who-plain") == f"{default_user}\n"
    vm.deploy(deploy, sudo=True, tag="sudo")
    assert read(vm, "/tmp/who-sudo") == "root\n"

    def make_carol() -> None:
        from pyinfra.operations import server

        server.user(name="carol", user="carol", create_home=True, _sudo=True)

    vm.deploy(make_carol)
    result = vm.deploy(deploy, tag="carol", orb_user="carol")
    assert result.ok
    assert read(vm, "/tmp/who-carol") == "carol\n"

    def upload_as_carol() -> None:
        from pyinfra.operations import files

        files.put(name="as carol", src=StringIO("carol's\n"), dest="/home/carol/up.txt")

    vm.deploy(upload_as_carol, orb_user="carol")
    assert stat(vm, "/home/carol/up.txt").startswith("carol carol ")
    assert "pyinfra-orb-" not in vm.run(["ls", "-a", "/tmp"], user="root", check=True).stdout

    with pytest.raises(DeployError, match="orb_user='nobody-here'"):
        vm.deploy(deploy, tag="x", orb_user="nobody-here")
