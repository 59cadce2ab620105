"""One path rule for deploy targets, deploy options, and bad deploy input, in pytest sessions.

Relative deploy paths resolve against the file of the test (or fixture) that asks - the marker's
``deploy=``, ``orb_vm.deploy``, ``assert_idempotent`` and ``orb_deploy`` alike - whatever the
current directory.  The sessions run from a directory that holds no deploy files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin.conftest import OrbEnv

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MARK = """
from io import StringIO
from pyinfra import host
from pyinfra.operations import files

files.put(name="mark", src=StringIO(host.data.get("who", "{where}") + "\\n"), dest="{dest}")
"""

CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def provisioned(orb_vm_factory_session):
    vm = orb_vm_factory_session(image="debian:bookworm")
    vm.deploy("deploys/mark.py")  # next to this conftest.py, whichever test asks first
    return vm
"""

TEST_A = """
import pytest

def test_session_machine_resolves_against_this_file(orb_vm):
    orb_vm.deploy("deploys/mark.py")
    assert orb_vm.run(["cat", "/tmp/mark-a"]).stdout == "a\\n"

def test_orb_deploy_with_sudo_and_data(orb_deploy, orb_vm):
    orb_deploy("deploys/root.py", sudo=True, who="orb_deploy")
    out = orb_vm.run(["stat", "-c", "%U", "/etc/mark-root"], check=True).stdout
    assert out == "root\\n"
    assert orb_vm.run(["cat", "/etc/mark-root"]).stdout == "orb_deploy\\n"

def test_fixture_resolves_against_its_conftest(provisioned):
    assert provisioned.run(["cat", "/tmp/mark-conftest"]).stdout == "conftest\\n"

@pytest.mark.orbstack(
    isolation="function",
    deploy="deploys/root.py",
    deploy_data={"who": "marker"},
    deploy_config={"SUDO": True},
)
def test_marker_deploy_data_and_config(orb_vm):
    assert orb_vm.run(["cat", "/etc/mark-root"]).stdout == "marker\\n"
    orb_vm.assert_idempotent("deploys/root.py", sudo=True, who="marker")

def test_missing_deploy_names_the_test(orb_vm):
    orb_vm.deploy("deploys/nope.py")

def test_non_callable_target(orb_vm):
    orb_vm.deploy(42)
"""

TEST_B = """
def test_same_session_machine_other_file(orb_vm):
    orb_vm.deploy("deploys/mark.py")
    assert orb_vm.run(["cat", "/tmp/mark-b"]).stdout == "b\\n"
"""


def _layout(root: Path) -> None:
    for where, dest in (("a", "/tmp/mark-a"), ("b", "/tmp/mark-b")):
        (root / where / "deploys").mkdir(parents=True)
        (root / where / "deploys" / "mark.py").write_text(MARK.format(where=where, dest=dest))
    (root / "a" / "deploys" / "root.py").write_text(
        MARK.format(where="root", dest="/etc/mark-root")
    )
    (root / "deploys").mkdir()
    (root / "deploys" / "mark.py").write_text(
        MARK.format(where="conftest", dest="/tmp/mark-conftest")
    )
    (root / "conftest.py").write_text(CONFTEST)
    (root / "a" / "test_a.py").write_text(TEST_A)
    (root / "b" / "test_b.py").write_text(TEST_B)
    (root / "elsewhere").mkdir()


def test_deploy_paths_follow_the_asking_test(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = pytester.path / "suite"
    _layout(suite)
    monkeypatch.chdir(suite / "elsewhere")
    result = pytester.runpytest_subprocess(
        str(suite), "-p", "no:cacheprovider", "--orbstack-required", timeout=900
    )
    result.assert_outcomes(passed=5, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*a/test_a.py::test_missing_deploy_names_the_test: deploy file not found: "
            "'deploys/nope.py'*directory of test_a.py*",
            "*a/test_a.py::test_non_callable_target: deploy(42): the target must be*",
        ]
    )
    assert orb_env.wait_until_empty() == []


def test_unknown_marker_deploy_option_is_a_usage_error(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    (pytester.path / "deploys").mkdir()
    (pytester.path / "deploys" / "x.py").write_text("")
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.orbstack(deploy="deploys/x.py", deploy_data={"a": 1}, deploy_conf={})
        def test_x(orb_vm):
            pass

        @pytest.mark.orbstack(deploy="deploys/x.py", deploy_config={"SUDOO": True})
        def test_y(orb_vm):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*test_bad.py::test_x: @pytest.mark.orbstack(*unknown argument(s) deploy_conf*",
            "*test_bad.py::test_y: @pytest.mark.orbstack(*unknown pyinfra config SUDOO*",
        ]
    )
    assert orb_env.count("create") == 0


def test_example_suite_from_another_directory(
    pytester: pytest.Pytester, orb_env: OrbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example suite, run from a directory that is not the repository's."""
    monkeypatch.chdir(pytester.path)
    result = pytester.runpytest_subprocess(
        str(EXAMPLES),
        "-p",
        "no:cacheprovider",
        "--orbstack-required",
        # machines installing nginx: CI's examples step runs them (pytest examples)
        "--ignore",
        str(EXAMPLES / "test_site.py"),
        "--ignore",
        str(EXAMPLES / "test_upgrade.py"),
        timeout=900,
    )
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("passed", 0) > 0
    assert not outcomes.get("skipped") and not outcomes.get("failed")
    assert orb_env.wait_until_empty() == []
