"""Tiny tests on one session machine, with no plugin: the same ``Machine.run`` call."""

from __future__ import annotations

import os

import pytest

from pytest_orbstack.machine import Machine

TESTS = int(os.environ.get("BENCH_TESTS", "500"))


@pytest.mark.parametrize("i", range(TESTS))
def test_tiny(plain_vm: Machine, i: int) -> None:
    assert plain_vm.run(["true"]).ok
