"""The same three machines made and deployed by hand: a module fixture, a factory, orb_deploy's
runner with the groups given."""

from pathlib import Path

import pytest

from pytest_orbstack.deploy.runner import make_inventory, run_deploy
from pytest_orbstack.topology import host_facts

SITE = Path(__file__).parent / "site.py"


@pytest.fixture(scope="module")
def machines(orb_vm_factory_module):
    lb, web1, web2 = (orb_vm_factory_module(isolation="module") for _ in range(3))
    groups = {"lb": [lb.name], "web": [web1.name, web2.name]}
    hosts = {m.name: host_facts(m) for m in (lb, web1, web2)}
    run_deploy([lb, web1, web2], SITE, inventory=make_inventory(groups, hosts=hosts))
    return lb, web1, web2


@pytest.mark.parametrize("n", range(3))
def test_uses_the_machines(machines, n):
    assert machines[0].run(["cat", "/tmp/bench-facts"], check=True).ok
