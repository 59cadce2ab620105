"""A load balancer in front of two web backends, deployed as one pyinfra inventory.

    pytest examples/test_site.py                                   # macOS with OrbStack
    pytest examples/test_site.py --orbstack-backend=sim            # Linux: the simulator

``inventory={"lb": 1, "web": 2}`` makes three machines and runs ``site/site.py`` once over them,
as ``pyinfra inventory.py site.py`` would: the balancer's nginx lists the backends it finds in
the ``web`` group (their ``orb_ip``), the backends listen on the port ``site/group_data/web.py``
gives.  The tests talk to the site from the host, through the balancer's address.
"""

from __future__ import annotations

import urllib.request

import pytest

SITE = "site/site.py"

pytestmark = pytest.mark.orbstack(inventory={"lb": 1, "web": 2}, deploy=SITE, isolation="module")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


def test_requests_through_the_balancer_reach_both_backends(orb_inventory):
    (lb,) = orb_inventory["lb"]
    lb.wait_for_unit("nginx.service")
    lb.wait_for_port(80, from_host=True)
    pages = {fetch(f"http://{lb.ip}/") for _ in range(6)}  # round robin
    assert pages == {f"backend {web.name}\n" for web in orb_inventory["web"]}


def test_the_site_answers_with_one_backend_stopped(orb_inventory):
    (lb,) = orb_inventory["lb"]
    down, up = orb_inventory["web"]
    down.run(["systemctl", "stop", "nginx"], user="root", check=True)
    try:
        for _ in range(4):
            assert fetch(f"http://{lb.ip}/") == f"backend {up.name}\n"
    finally:
        down.run(["systemctl", "start", "nginx"], user="root", check=True)
        down.wait_for_unit("nginx.service")
        down.wait_for_port(8080)


def test_the_whole_inventory_is_idempotent(orb_inventory):
    results = orb_inventory.assert_idempotent(SITE)
    assert sorted(results) == sorted(machine.name for machine in orb_inventory)
