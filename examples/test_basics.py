"""The basics: one shared machine, fresh machines, a factory, files in and out.

pytest examples/test_basics.py                          # macOS with OrbStack
pytest examples/test_basics.py --orbstack-backend=sim   # Linux: the bundled simulator
"""

from __future__ import annotations

import pytest


def test_kernel(orb_vm):
    # No marker: the default image, one machine shared by the whole session (and all workers).
    assert orb_vm.run(["uname", "-s"]).stdout == "Linux\n"
    assert orb_vm.run("hostname").stdout.strip() == orb_vm.name


@pytest.mark.orbstack(image="debian:bookworm", isolation="function")
def test_package_install_is_contained(orb_vm):
    # A fresh machine for this test only: break what you like.
    orb_vm.run(["sudo", "rm", "-f", "/usr/bin/env"], check=True)
    assert not orb_vm.run(["test", "-e", "/usr/bin/env"]).ok


def test_sudo_and_users(orb_vm):
    assert orb_vm.run(["id", "-u"], user="root").stdout == "0\n"
    me = orb_vm.run(["id", "-un"]).stdout.strip()
    assert orb_vm.run(["sudo", "-n", "true"]).ok, f"{me} has passwordless sudo, as on OrbStack"


def test_files_in_and_out(orb_vm, tmp_path):
    config = tmp_path / "app.ini"
    config.write_text("[app]\nport = 8080\n")
    config.chmod(0o644)
    orb_vm.push(config, "app.ini")
    assert "port = 8080" in orb_vm.run(["cat", "app.ini"]).stdout
    orb_vm.run(["sh", "-c", "sed 's/8080/9090/' app.ini > out.ini"], check=True)
    orb_vm.pull("out.ini", tmp_path / "out.ini")
    assert "9090" in (tmp_path / "out.ini").read_text()


def test_two_machines_talk_by_factory(orb_vm_factory):
    # Further machines, deleted when this test ends; both resolve each other's names only on
    # real OrbStack, so this only checks what both backends agree on.
    a = orb_vm_factory(image="debian:bookworm")
    b = orb_vm_factory(image="ubuntu:noble", user="builder")
    assert a.name != b.name
    assert b.run(["whoami"]).stdout.strip() == "builder"
    assert a.ip and b.ip and a.ip != b.ip


@pytest.mark.orbstack(isolation="module")
class TestModuleMachine:
    # One machine for the tests of this module that ask for module isolation - per xdist
    # worker, as any module-scoped fixture is: under `-n 2` these two tests may run on two
    # workers, each with its own machine (`--dist loadscope` keeps a module's tests on one).
    # So each test checks the machine holds exactly the steps of the tests its process ran.
    steps: list[str] = []

    def test_write(self, orb_vm):
        orb_vm.run(["sh", "-c", "echo write >> /tmp/steps"], check=True)
        TestModuleMachine.steps.append("write")
        assert orb_vm.run(["cat", "/tmp/steps"]).stdout.split() == self.steps

    def test_read(self, orb_vm):
        orb_vm.run(["sh", "-c", "echo read >> /tmp/steps"], check=True)
        TestModuleMachine.steps.append("read")
        assert orb_vm.run(["cat", "/tmp/steps"]).stdout.split() == self.steps
