"""Fresh provisioned machines, the pyinfra-orbstack (seed) way: see ``conftest.py``.

Run with ``-p no:orbstack``: no plugin fixture is involved.
"""

from __future__ import annotations

import pytest
from checks import TESTS, check_provisioned

from pytest_orbstack.machine import Machine


@pytest.mark.parametrize("i", range(TESTS))
def test_fresh(seed_vm: Machine, i: int) -> None:
    check_provisioned(seed_vm, i)
