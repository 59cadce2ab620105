"""Provisioned templates: one provisioning per deploy, one clone per fresh machine."""

from __future__ import annotations

import json

import pytest

from tests.plugin.conftest import OrbEnv

DEPLOY = """
from pyinfra.operations import files
files.put(name="Drop the marker", src="files/marker.txt", dest="/var/tmp/marker.txt")
"""

TESTS = """
import json

import pytest
pytestmark = pytest.mark.orbstack(isolation="function", deploy="deploys/role.py")

@pytest.mark.parametrize("n", range(3))
def test_clone_is_provisioned_and_fresh(orb_vm, n):
    assert orb_vm.run(["cat", "/var/tmp/marker.txt"]).stdout == MARKER
    assert not orb_vm.run(["test", "-e", "/var/tmp/dirty"]).ok   # nothing from other tests
    orb_vm.run(["touch", "/var/tmp/dirty"], check=True)
    assert orb_vm.run(["hostname"]).stdout.strip() == orb_vm.name
"""


def _write(pytester: pytest.Pytester, marker: str) -> None:
    deploys = pytester.path / "deploys"
    (deploys / "files").mkdir(parents=True, exist_ok=True)
    (deploys / "role.py").write_text(DEPLOY)
    (deploys / "files" / "marker.txt").write_text(marker)
    pytester.makepyfile(test_role=f"MARKER = {marker!r}\n" + TESTS)


def test_one_provisioning_and_n_clones_then_new_template_on_change(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    _write(pytester, "v1\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(passed=3)
    made = orb_env.made()
    # The template is the base's only user in this run (no reuse): it is the one create,
    # provisioned in place, instead of a base stopped and cloned first.
    assert made["create"] == 1
    [create] = [op for op in orb_env.sim.ops() if op.get("cmd") == "create"]
    assert "-tpl-" in create["args"][-1]
    assert made["template"] == 0
    assert made["fresh"] == 3  # one per test, cloned from the template
    # the template row names the deploy that provisions it
    result.stdout.fnmatch_lines(["*tpl*template*role.py*deleted*"])
    assert orb_env.names() == []

    # reuse keeps the template across runs; a changed file the deploy reads makes a new one
    args = ("-p", "no:cacheprovider", "--orbstack-reuse")
    pytester.runpytest_subprocess(*args, timeout=600).assert_outcomes(passed=3)
    [base, template] = sorted(orb_env.names(), key=lambda n: "-tpl-" in n)
    assert "-base-" in base and "-tpl-" in template  # both kept for the next run
    pytester.runpytest_subprocess(*args, timeout=600).assert_outcomes(passed=3)
    assert sorted(orb_env.names()) == sorted([base, template])
    assert orb_env.count("create") == 2  # the first run's template, then a base kept for reuse
    assert orb_env.made()["template"] == 1  # cloned from the base; adopted on the second run
    _write(pytester, "v2\n")
    pytester.runpytest_subprocess(*args, timeout=600).assert_outcomes(passed=3)
    names = orb_env.names()
    assert base in names  # the machine as create makes it has not changed: still adopted
    [new_template] = [n for n in names if n != base]
    assert new_template != template  # rebuilt; the stale one was pruned
    assert orb_env.count("create") == 2  # a warm run creates nothing
    assert orb_env.made()["template"] == 2
    assert orb_env.made()["fresh"] == 12


BARE = """
import pytest

@pytest.mark.orbstack(isolation="function")
@pytest.mark.parametrize("n", range(2))
def test_bare(orb_vm, n):
    assert not orb_vm.run(["test", "-e", "/var/tmp/marker.txt"]).ok
"""


@pytest.mark.parametrize("extra", ["bare", "factory"])
def test_base_made_when_more_than_the_template_needs_it(
    pytester: pytest.Pytester, orb_env: OrbEnv, extra: str
) -> None:
    """The base is skipped only when the template is its one user: tests that want the bare
    machine, or factory fixtures (any spec, once tests run), keep it: still one create."""
    _write(pytester, "v1\n")
    if extra == "bare":
        pytester.makepyfile(test_bare=BARE)
    else:
        pytester.makepyfile(
            test_factory="""
            def test_factory(orb_vm_factory):
                assert orb_vm_factory().run(["true"]).ok
            """
        )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(passed=5 if extra == "bare" else 4)
    made = orb_env.made()
    assert made["create"] == 1
    [create] = [op for op in orb_env.sim.ops() if op.get("cmd") == "create"]
    assert "-base-" in create["args"][-1]
    assert made["template"] == 1
    assert made["fresh"] == (5 if extra == "bare" else 4)  # the factory's machine too
    assert orb_env.names() == []


def test_deploys_in_tests_are_reported_with_their_time(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    _write(pytester, "v1\n")
    pytester.makepyfile(
        test_deploying="""
        def test_deploys(orb_vm):
            assert orb_vm.deploy("deploys/role.py").changed
            orb_vm.assert_idempotent("deploys/role.py")
        """
    )
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "test_deploying.py", f"--orbstack-report={report}", timeout=600
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*2 deploy(s) in tests took *s*"])
    [test] = json.loads(report.read_text())["tests"]
    assert [(d["ok"], d["changed"]) for d in test["deploys"]] == [(True, True), (True, False)]
    assert all(d["target"].endswith("role.py") and d["seconds"] > 0 for d in test["deploys"])
    assert test["deploy_seconds"] > 0
