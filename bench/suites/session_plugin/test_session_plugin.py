"""Tiny tests on one session machine, through the plugin's ``orb_vm``."""

from __future__ import annotations

import os

import pytest

from pytest_orbstack.machine import Machine

TESTS = int(os.environ.get("BENCH_TESTS", "500"))


@pytest.mark.orbstack(image="debian:bookworm", isolation="session")
@pytest.mark.parametrize("i", range(TESTS))
def test_tiny(orb_vm: Machine, i: int) -> None:
    assert orb_vm.run(["true"]).ok
