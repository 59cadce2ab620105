"""A deploy's ``server.sysctl`` on a simulated machine never changes the host's kernel.

Simulated machines have ``/proc/sys`` read-only (except their own network namespace's
``/proc/sys/net``): a global sysctl fails in the machine, as on a container-based OrbStack
machine, and a network sysctl changes only the machine's value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_orbstack.deploy import DeployError
from pytest_orbstack.machine import Machine
from tests.conftest import SimHome, module_machine

DEPLOY = """
from pyinfra import host
from pyinfra.operations import server
server.sysctl(name="set it", key=host.data.key, value=host.data.value, _sudo=True)
"""


@pytest.fixture(scope="module")
def vm(sim_home: SimHome) -> Iterator[Machine]:
    yield from module_machine(sim_home, "sysctl")


def _host(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text().strip()


def test_server_sysctl_of_a_global_key_fails_and_leaves_the_host_alone(
    vm: Machine, tmp_path: Path
) -> None:
    deploy = tmp_path / "sysctl.py"
    deploy.write_text(DEPLOY)
    before = _host("fs.file-max")
    with pytest.raises(DeployError):
        vm.deploy(deploy, key="fs.file-max", value=int(before) - 1)
    assert _host("fs.file-max") == before


def test_server_sysctl_of_a_network_key_changes_only_the_machine(
    vm: Machine, tmp_path: Path
) -> None:
    deploy = tmp_path / "sysctl.py"
    deploy.write_text(DEPLOY)
    key = "net.ipv4.tcp_keepalive_time"
    before = _host(key)
    value = 4321 if before != "4321" else 4322
    assert vm.deploy(deploy, key=key, value=value).ok
    assert vm.run(["sysctl", "-n", key], user="root", check=True).stdout.strip() == str(value)
    assert _host(key) == before
