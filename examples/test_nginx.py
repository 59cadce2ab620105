"""Deploy nginx with pyinfra, then fetch the page from the test itself, over the network.

    pytest examples/test_nginx.py                                  # macOS with OrbStack
    pytest examples/test_nginx.py --orbstack-backend=sim           # Linux: the simulator

The machine is a real one with systemd as PID 1 and its own address (``orb_vm.ip``, on
OrbStack's 192.168.139.0/24 in both cases), so the test on the host reaches the service it just
deployed, exactly as a user would.  The deploy installs nginx from the distribution's archive,
so the machine needs outbound network access (orbsim gives it NAT through its bridge).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parent / "deploys" / "nginx.py"
GREETING = "hello from an orb machine"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


@pytest.mark.orbstack(image="debian:bookworm", isolation="function")
def test_nginx_serves_the_page_and_the_deploy_is_idempotent(orb_vm):
    result = orb_vm.deploy(DEPLOY, greeting=GREETING)
    assert result.ok and result.changed

    # the evidence is the service itself, reached from the host over the machine's own address
    assert orb_vm.ip
    assert fetch(f"http://{orb_vm.ip}/") == GREETING + "\n"

    again = orb_vm.assert_idempotent(DEPLOY, greeting=GREETING)
    assert not again.changed


@pytest.mark.orbstack(image="debian:bookworm", isolation="function")
def test_nginx_is_a_running_enabled_systemd_service(orb_vm):
    pytest.importorskip("testinfra", reason="needs pytest-orbstack[testinfra]")
    orb_vm.deploy(DEPLOY, greeting=GREETING)
    nginx = orb_vm.host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled
    assert orb_vm.host.socket("tcp://0.0.0.0:80").is_listening
