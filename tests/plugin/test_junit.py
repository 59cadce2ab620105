"""JUnit XML (``pytest --junitxml``): each test's machines, its wait and its deploys appear as
``<property>`` elements, serially and under xdist; read back by parsing the XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.plugin.conftest import OrbEnv

SUITE = """
import pytest

def test_session(orb_vm):
    assert orb_vm.run(["true"]).ok

@pytest.mark.orbstack(isolation="function")
def test_deploys(orb_vm):
    assert orb_vm.deploy("deploys/mark.py").changed
    assert not orb_vm.deploy("deploys/mark.py").changed

def test_two_machines(orb_vm, orb_vm_factory):
    other = orb_vm_factory()
    assert other.name != orb_vm.name

def test_no_machine():
    pass
"""
DEPLOY = "from pyinfra.operations import files\nfiles.file(name='mark', path='/var/tmp/mark')\n"


def properties(path: str) -> dict[str, dict[str, str]]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        cases[case.get("name", "")] = props
    return cases


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist2"])
def test_machines_waits_and_deploys_are_junit_properties(
    pytester: pytest.Pytester, orb_env: OrbEnv, workers: list[str]
) -> None:
    (pytester.path / "deploys").mkdir()
    (pytester.path / "deploys" / "mark.py").write_text(DEPLOY)
    pytester.makepyfile(test_suite=SUITE)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--junitxml={xml}", *workers, timeout=900
    )
    result.assert_outcomes(passed=4)
    cases = properties(str(xml))

    session = cases["test_session"]
    assert session["orbstack.machine.0.name"].startswith("orbpt-")
    assert session["orbstack.machine.0.image"].startswith("debian")
    assert session["orbstack.machine.0.role"] == "session"
    assert float(session["orbstack.waited"]) >= 0
    assert not [k for k in session if k.startswith("orbstack.deploy.")]

    deploys = cases["test_deploys"]
    assert deploys["orbstack.machine.0.role"] == "function"
    assert deploys["orbstack.deploy.0.file"].endswith("mark.py")
    assert deploys["orbstack.deploy.0.machine"] == deploys["orbstack.machine.0.name"]
    assert (deploys["orbstack.deploy.0.outcome"], deploys["orbstack.deploy.1.outcome"]) == (
        "changed",
        "ok",
    )
    assert float(deploys["orbstack.deploy.0.seconds"]) > 0

    two = cases["test_two_machines"]
    assert two["orbstack.machine.0.role"] == "session"
    assert two["orbstack.machine.1.role"] == "factory"
    assert two["orbstack.machine.0.name"] != two["orbstack.machine.1.name"]

    assert cases["test_no_machine"] == {}
