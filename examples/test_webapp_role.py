"""Test a pyinfra role (``deploys/webapp.py``) on a real machine: converge, check, converge again.

    pytest examples/test_webapp_role.py                                  # macOS with OrbStack
    pytest examples/test_webapp_role.py --orbstack-backend=sim           # Linux: the simulator

``isolation="function"`` gives the test a fresh machine, so the first deploy really changes
things; the checks read the machine itself (``orb_vm.run``), not pyinfra's report; the second run
must change nothing (molecule's idempotence check).  ``vm.deploy`` raises ``DeployError`` naming
the failed operations (with their stderr), and ``assert_idempotent`` raises ``IdempotenceError``
(an ``AssertionError``) listing every operation that still changed.
"""

from __future__ import annotations

import json

import pytest

# Relative to this file, like the marker's deploy= (whatever the current directory is).
DEPLOY = "deploys/webapp.py"


@pytest.mark.orbstack(image="debian:bookworm", isolation="function")
def test_webapp_role_converges_and_is_idempotent(orb_vm):
    result = orb_vm.deploy(DEPLOY, webapp_port=9090, webapp_workers=4)
    assert result.ok
    assert result.changed
    assert result.operation("Install jq").changed

    # The machine, not pyinfra's report, is the evidence.
    assert orb_vm.run(["id", "-u", "webapp"]).ok
    stat = orb_vm.run(["stat", "-c", "%a %U %G", "/etc/webapp/webapp.conf"], user="root")
    assert stat.stdout == "640 root webapp\n"
    conf = orb_vm.run(["cat", "/etc/webapp/webapp.conf"], user="root", check=True).stdout
    assert "port = 9090\n" in conf
    assert "workers = 4\n" in conf
    status = orb_vm.run(["webapp-status"], user="webapp", check=True)
    assert json.loads(status.stdout) == {"port": 9090, "workers": 4}

    again = orb_vm.assert_idempotent(DEPLOY, webapp_port=9090, webapp_workers=4)
    assert not again.changed


@pytest.mark.orbstack(image="debian:bookworm", isolation="function")
def test_changing_data_changes_only_the_config(orb_vm):
    orb_vm.deploy(DEPLOY)
    result = orb_vm.deploy(DEPLOY, webapp_port=8181)
    assert [op.name for op in result.changed_operations] == ["Write /etc/webapp/webapp.conf"]
    conf = orb_vm.run(["cat", "/etc/webapp/webapp.conf"], user="root", check=True).stdout
    assert "port = 8181\n" in conf
