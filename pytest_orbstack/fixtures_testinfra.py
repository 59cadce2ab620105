"""The ``orb_host`` fixture: the testinfra ``Host`` of the test's ``orb_vm`` machine.

Registered by the plugin (``config.pluginmanager.register``), whether or not pytest-testinfra is
installed: importing this module does not import testinfra, and using ``orb_host`` without it
fails with :class:`~pytest_orbstack.testinfra_backend.MissingTestinfraError`, naming the extra.

Why a separate fixture rather than pytest-testinfra's own ``host``: see ``docs/testinfra.md``
("``host`` and ``orb_host``").  In short, testinfra's ``host`` is module-scoped and filled at
collection time from ``--hosts``/``testinfra_hosts`` by testinfra's ``pytest_generate_tests``,
while ``orb_vm``'s machine only exists at setup time; making ``host`` follow ``orb_vm`` would
mean patching that hook or overriding ``host`` for every suite.  A conftest that wants the name
``host`` can opt in with the one-line override shown in the docs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine


@pytest.fixture
def orb_host(orb_vm: Machine) -> Any:
    """The testinfra ``Host`` of this test's ``orb_vm`` (``orb_vm.host``, one per machine).

    Needs ``pytest-orbstack[testinfra]``.  Commands run through ``orbctl run -m NAME`` as the
    machine's default user; use ``with orb_host.sudo():`` for root.
    """
    return orb_vm.host


__all__ = ["orb_host"]
