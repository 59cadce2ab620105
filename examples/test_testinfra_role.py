"""Provision a role with a pyinfra deploy, then check the machine with testinfra.

    pip install 'pytest-orbstack[testinfra]'
    pytest examples/test_testinfra_role.py          # on macOS with OrbStack
    pytest examples/test_testinfra_role.py --orbstack-backend=sim   # Linux: the simulator

The marker asks for one Debian machine provisioned with ``deploys/testinfra_role.py`` (a path
relative to this file), shared by every test in the module (``isolation="session"``, the
default).  ``orb_host`` is the testinfra ``Host`` of that machine (``orb_vm.host``), so the tests
read like any testinfra suite; ``orb_vm`` is still there for ``run`` and the idempotence check.
"""

from __future__ import annotations

import pytest

pytest.importorskip("testinfra", reason="needs pytest-orbstack[testinfra]")

# Relative to this file, like the marker's deploy= (whatever the current directory is).
DEPLOY = "deploys/testinfra_role.py"

pytestmark = pytest.mark.orbstack(image="debian:bookworm", deploy="deploys/testinfra_role.py")


def test_packages_are_installed(orb_host):
    for name in ("jq", "tree"):
        assert orb_host.package(name).is_installed, name
    assert orb_host.exists("jq")


def test_deployer_user_and_ops_group(orb_host):
    deployer = orb_host.user("deployer")
    assert deployer.exists
    assert deployer.shell == "/bin/bash"
    assert deployer.home == "/home/deployer"
    assert "ops" in deployer.groups
    assert orb_host.group("ops").exists
    assert orb_host.file("/home/deployer").is_directory


def test_application_files(orb_host):
    app = orb_host.file("/srv/app")
    assert app.is_directory
    assert (app.user, app.group, app.mode) == ("deployer", "ops", 0o750)

    # Only deployer and ops may enter /srv/app: look at the configuration as root.
    with orb_host.sudo():
        config = orb_host.file("/srv/app/config.json")
        assert (config.user, config.group, config.mode) == ("root", "ops", 0o640)
        assert '"env": "test"' in config.content_string

    script = orb_host.file("/usr/local/bin/app-status")
    assert (script.user, script.mode) == ("root", 0o755)


def test_status_script_respects_permissions(orb_host):
    # The machine's default user is not in ops: the script cannot read the configuration.
    denied = orb_host.run("app-status")
    assert denied.rc != 0
    assert "Permission denied" in denied.stderr
    # deployer is: the same command succeeds under sudo -u deployer.
    with orb_host.sudo("deployer"):
        assert orb_host.check_output("app-status") == "env=test workers=2"
        assert orb_host.check_output("id -un") == "deployer"


def test_deploy_is_idempotent(orb_vm):
    # molecule's idempotence check: running the role again changes nothing.
    orb_vm.assert_idempotent(DEPLOY)
