"""Fresh provisioned machines, the plugin's way: ``isolation="function"`` with ``deploy=``.

The deploy is provisioned once into a template machine; every test gets a copy-on-write clone.
"""

from __future__ import annotations

import pytest
from checks import DEPLOY, TESTS, check_provisioned

from pytest_orbstack.machine import Machine


@pytest.mark.orbstack(image="debian:bookworm", isolation="function", deploy=DEPLOY)
@pytest.mark.parametrize("i", range(TESTS))
def test_fresh(orb_vm: Machine, i: int) -> None:
    check_provisioned(orb_vm, i)
