"""pytest's own modes: those that run no test make no machine; ``--setup-only`` and
``--setup-show`` run fixtures as pytest documents (so they do make machines).

Every count is read from the simulator's operation log of this test's own home.
"""

from __future__ import annotations

import pytest

from tests.plugin.conftest import OrbEnv

#: Every kind of demand the warm-up plans for: a session machine, fresh machines from a
#: provisioned template, module machines, and a factory (open-ended demand).
SUITE = {
    "deploys/mark.py": (
        "from pyinfra.operations import server\n"
        "server.shell(name='mark', commands=['touch /var/tmp/provisioned'])\n"
    ),
    "test_suite.py": """
import pytest

def test_session(orb_vm):
    assert orb_vm.run(["true"]).ok

@pytest.mark.orbstack(isolation="function", deploy="deploys/mark.py")
@pytest.mark.parametrize("n", range(3))
def test_fresh(orb_vm, n):
    assert orb_vm.run(["test", "-e", "/var/tmp/provisioned"]).ok

@pytest.mark.orbstack(isolation="module")
def test_module(orb_vm):
    assert orb_vm.run(["true"]).ok

def test_factory(orb_vm_factory):
    assert orb_vm_factory(isolation="function").run(["true"]).ok
""",
}

#: Simulator commands that make, start or provision a machine.
MAKING = ("create", "clone", "start", "run", "push")


def suite(pytester: pytest.Pytester) -> None:
    for path, text in SUITE.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def making_calls(orb_env: OrbEnv) -> list[str]:
    return [f"{op['cmd']} {op.get('args')}" for op in orb_env.sim.ops() if op["cmd"] in MAKING]


NO_TEST_MODES = [
    pytest.param(["--setup-plan"], id="setup-plan"),
    pytest.param(["--setup-plan", "-n", "2"], id="setup-plan-xdist"),
    pytest.param(["--fixtures"], id="fixtures"),
    pytest.param(["--fixtures-per-test"], id="fixtures-per-test"),
    pytest.param(["--markers"], id="markers"),
    pytest.param(["--collect-only"], id="collect-only"),
    pytest.param(["--collect-only", "-n", "2"], id="collect-only-xdist"),
    pytest.param(["-q", "--co"], id="co-quiet"),
    pytest.param(["--help"], id="help"),
    pytest.param(["--version"], id="version"),
]


@pytest.mark.parametrize("args", NO_TEST_MODES)
def test_modes_that_run_no_test_make_no_machine(
    pytester: pytest.Pytester, orb_env: OrbEnv, args: list[str]
) -> None:
    suite(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert making_calls(orb_env) == []
    assert orb_env.names() == []
    if "--setup-plan" in args and "-n" not in args:  # (xdist workers do not print the plan)
        # the plan is still shown: pytest's own output, with our fixtures in it
        result.stdout.fnmatch_lines(["*SETUP    F orb_vm*"])
    if "--fixtures" in args:
        result.stdout.fnmatch_lines(["*orb_vm_factory*"])


def test_setup_only_runs_fixtures_but_no_test_body(
    pytester: pytest.Pytester, orb_env: OrbEnv
) -> None:
    pytester.makepyfile(
        test_one="""
        def test_body(orb_vm):
            orb_vm.run(["touch", "/tmp/body-ran"], check=True)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--setup-only", timeout=600)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*SETUP    S _orb_state*", "*SETUP    F orb_vm*"])
    made = orb_env.made()
    assert made["create"] + made["session"] >= 1  # the fixture made its machine
    bodies = [op for op in orb_env.sim.ops() if op["cmd"] == "run" and "touch" in op["args"]]
    assert bodies == []  # no test body ran
    assert orb_env.names() == []


def test_setup_show_runs_the_tests(pytester: pytest.Pytester, orb_env: OrbEnv) -> None:
    pytester.makepyfile(
        test_one="""
        def test_body(orb_vm):
            orb_vm.run(["touch", "/tmp/body-ran"], check=True)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--setup-show", timeout=600)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SETUP    F orb_vm*", "*test_one.py::test_body (fixtures used:*"])
    bodies = [op for op in orb_env.sim.ops() if op["cmd"] == "run" and "touch" in op["args"]]
    assert len(bodies) == 1
    assert orb_env.names() == []
