"""An upgrade path: the web role as it was at its first release, upgraded to today's.

    pytest examples/test_upgrade.py --orbstack-backend=sim

``deploy_from=`` provisions the template with ``site/roles/web.py``'s directory taken from git
at that revision (not the working tree); each test gets a clone of a machine running the old
release and applies today's role to it, the riskiest change to a running fleet.  (Run from a
git checkout of pytest-orbstack: the revision is one of its commits.)
"""

from __future__ import annotations

import urllib.request

import pytest

ROLE = "site/roles/web.py"
#: The commit that added the web role (release 1: no /health).
RELEASE_1 = "8daf03a0f5ed549ed751a760b0c9c96cd4d19df1"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


@pytest.mark.orbstack(deploy=ROLE, deploy_from=RELEASE_1, isolation="function")
def test_the_web_role_upgrades_from_release_1(orb_vm):
    orb_vm.wait_for_unit("nginx.service")
    orb_vm.wait_for_port(8080, from_host=True)
    base = f"http://{orb_vm.ip}:8080"
    assert fetch(f"{base}/").startswith("backend ")  # release 1 is running
    assert fetch(f"{base}/health").startswith("backend ")  # no health check: the page

    result = orb_vm.deploy(ROLE)  # today's release over the old one
    changed = [op.name for op in result.changed_operations]
    assert "roles/web.py | The backend site" in changed or "The backend site" in changed
    assert fetch(f"{base}/health") == "ok\n"
    assert fetch(f"{base}/") == f"backend {orb_vm.name}\n"
    orb_vm.assert_idempotent(ROLE)
