"""A deploy that fails never reports success: ``run_deploy`` and the pyinfra CLI agree.

The same deploy files (``tests/data/deploys/truth``) run through :func:`run_deploy` and through
``pyinfra @orb/NAME FILE -y`` (the connector finding the simulator through
``ORBSTACK_BACKEND=sim``, as a user on Linux would), each writing marker files into its own
directory of the machine.  For every file both must agree on success or failure, and the markers
read from the machine afterwards must show the same operations ran - the ones the table expects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_orbstack.deploy import DeployError, DeployResult, run_deploy
from pytest_orbstack.machine import Machine
from tests.conftest import SimHome, module_machine

TRUTH = Path(__file__).resolve().parent.parent / "data" / "deploys" / "truth"


@dataclass(frozen=True)
class Case:
    deploy: str
    ok: bool
    ran: frozenset[str]  # marker files the deploy leaves behind
    failed: str | None = None  # the operation the result names as failed
    not_run: tuple[str, ...] = ()  # operations the result lists as not run
    error_text: str = ""  # expected in the failure's text


CASES = [
    Case("succeeds.py", True, frozenset({"1", "2", "3"})),
    Case("fails_first.py", False, frozenset(), "step 1", ("step 2", "step 3"), "step 1 fails"),
    Case("fails_middle.py", False, frozenset({"1"}), "step 2", ("step 3",), "step 2 fails"),
    Case("fails_last.py", False, frozenset({"1", "2"}), "step 3", (), "step 3 fails"),
    Case("template_error.py", False, frozenset({"1"}), "render", ("step 3",), "no_such_name"),
    Case(
        "operation_error.py",
        False,
        frozenset({"1"}),
        "refuse",
        ("step 3",),
        "OperationError: refused on purpose",
    ),
    Case(
        "generator_raises.py",
        False,
        frozenset({"1"}),
        "broken",
        ("step 3",),
        "RuntimeError: the command generator broke",
    ),
    Case("deploy_code_raises.py", False, frozenset(), None, ("step 1",), "the deploy code broke"),
    Case("if_skipped.py", True, frozenset({"1", "3"})),
]


@pytest.fixture
def truth(tmp_path: Path) -> Path:
    """A copy of the deploy files: the CLI writes pyinfra-debug.log where it runs."""
    return Path(shutil.copytree(TRUTH, tmp_path / "truth"))


@pytest.fixture(scope="module")
def vm(sim_home: SimHome) -> Iterator[Machine]:
    yield from module_machine(sim_home, "truth")


def markers(vm: Machine, directory: str) -> frozenset[str]:
    out = vm.run(["sh", "-c", 'ls -1 "$1" 2>/dev/null || true', "sh", directory], check=True)
    return frozenset(out.stdout.split())


def pyinfra_cli() -> str:
    found = shutil.which("pyinfra") or str(Path(sys.executable).with_name("pyinfra"))
    if not Path(found).exists():
        pytest.skip("the pyinfra CLI is not installed")
    return found


def run_cli(vm: Machine, sim_home: SimHome, deploy: Path, marker_dir: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "ORBSTACK_ORBCTL"}
    env.update(sim_home.env, ORBSTACK_BACKEND="sim")
    proc = subprocess.run(
        [pyinfra_cli(), f"@orb/{vm.name}", deploy.name, "-y", "--data", f"marker_dir={marker_dir}"],
        env=env,
        cwd=deploy.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr or proc.returncode == 1, proc.stderr
    return proc.returncode


@pytest.mark.parametrize("case", CASES, ids=[c.deploy for c in CASES])
def test_run_deploy_and_the_cli_agree(
    vm: Machine, sim_home: SimHome, truth: Path, case: Case
) -> None:
    run_id = uuid.uuid4().hex[:8]
    api_dir, cli_dir = f"/tmp/truth-{run_id}-api", f"/tmp/truth-{run_id}-cli"
    deploy = truth / case.deploy

    result: DeployResult
    message = ""
    try:
        result = run_deploy([vm], deploy, data={"marker_dir": api_dir})[vm.name]
    except DeployError as exc:
        result, message = exc.results[vm.name], str(exc)
    assert result.ok is case.ok, message
    assert case.error_text in message
    assert markers(vm, api_dir) == case.ran

    returncode = run_cli(vm, sim_home, deploy, cli_dir)
    assert returncode == (0 if case.ok else 1)
    assert markers(vm, cli_dir) == case.ran

    if case.failed is not None:
        assert [op.name for op in result.failed_operations] == [case.failed]
    else:
        assert result.failed_operations == []
    assert [op.name for op in result.skipped_operations] == list(case.not_run)


def test_if_skipped_operation_ran_without_change(vm: Machine) -> None:
    result = run_deploy([vm], TRUTH / "if_skipped.py", data={"marker_dir": "/tmp/truth-if"})
    step2 = result[vm.name].operation("step 2")
    assert step2.executed and step2.success and not step2.changed


def test_raised_operation_carries_its_error(vm: Machine) -> None:
    with pytest.raises(DeployError) as info:
        run_deploy([vm], TRUTH / "template_error.py", data={"marker_dir": "/tmp/truth-tpl"})
    render = info.value.result.operation("render")
    assert render.failed and render.error is not None
    assert "Error in template" in render.error and "no_such_name" in render.error
    message = str(info.value)
    assert "operation failed: render" in message
    assert "did not run: step 3" in message
