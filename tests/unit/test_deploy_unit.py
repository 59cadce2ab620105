"""Deploy processes, options, the path rule and backend selection, without any real machine.

Machines are the fake ``orbctl`` of ``test_connector_unit.py``: commands run on this host, in a
per-machine home directory, and every ``orbctl`` call is logged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from pytest_orbstack.deploy import (
    DeployError,
    DeployProcessError,
    DeployResult,
    run_deploy,
    targets,
)
from pytest_orbstack.deploy.fingerprint import deploy_fingerprint
from pytest_orbstack.deploy.results import OperationResult
from pytest_orbstack.deploy.runner import deploy_options
from pytest_orbstack.deploy.targets import check_target, requested_by, resolve_deploy_file
from pytest_orbstack.errors import ConfigError
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import select_executable
from pytest_orbstack.spec import build_spec
from tests.unit.test_connector_unit import LocalOrb, write_deploy


@pytest.fixture
def orb(tmp_path: Path) -> LocalOrb:
    root = tmp_path / "orb"
    root.mkdir()
    return LocalOrb(root)


@pytest.fixture
def box(orb: LocalOrb) -> Machine:
    return orb.add("box")


def home(orb: LocalOrb, name: str) -> Path:
    return orb.root / "machines" / name / "home"


# -- the deploy process ------------------------------------------------------------------------


def test_local_include_works_in_deploy_files(box: Machine, orb: LocalOrb, tmp_path: Path) -> None:
    project = tmp_path / "role"
    (project / "tasks").mkdir(parents=True)
    write_deploy(
        project / "tasks" / "marker.py",
        """
        from pyinfra.operations import server

        server.shell(name="included", commands=["echo included > included.txt"])
        """,
    )
    deploy = write_deploy(
        project / "main.py",
        """
        from pyinfra import local
        from pyinfra.operations import server

        server.shell(name="before", commands=["echo before > before.txt"])
        local.include("tasks/marker.py")
        """,
    )
    result = run_deploy([box], deploy)["box"]
    assert [op.name for op in result.operations] == ["before", "tasks/marker.py | included"]
    assert (home(orb, "box") / "included.txt").read_text() == "included\n"


def test_deploys_on_two_machines_run_at_the_same_time(orb: LocalOrb, tmp_path: Path) -> None:
    """Each deploy waits (bounded) for the other to have started: serialised deploys fail."""
    a, b = orb.add("a"), orb.add("b")
    deploy = write_deploy(
        tmp_path / "rendezvous.py",
        """
        from pyinfra import host
        from pyinfra.operations import server

        me = host.data.orb_name
        other = host.data.other
        server.shell(
            name="meet",
            commands=[
                f"touch started; for i in $(seq 300); do "
                f"[ -e ../../{other}/home/started ] && exit 0; sleep 0.1; done; exit 1"
            ],
        )
        """,
    )
    results: dict[str, DeployResult] = {}
    errors: list[BaseException] = []

    def go(machine: Machine, other: str) -> None:
        try:
            results[machine.name] = machine.deploy(deploy, other=other)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=go, args=(a, "b")),
        threading.Thread(target=go, args=(b, "a")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert results["a"].ok and results["b"].ok


def test_a_crashed_deploy_process_is_not_a_result(
    box: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy = write_deploy(tmp_path / "kill.py", "import os\nos._exit(9)\n")
    with pytest.raises(DeployProcessError, match="exited 9 without results"):
        run_deploy([box], deploy)


def test_deploy_is_recorded_in_the_machine_history(box: Machine, tmp_path: Path) -> None:
    ok = write_deploy(
        tmp_path / "ok.py",
        "from pyinfra.operations import server\nserver.shell(commands=['true'])\n",
    )
    bad = write_deploy(
        tmp_path / "bad.py",
        "from pyinfra.operations import server\nserver.shell(name='no', commands=['exit 4'])\n",
    )
    box.deploy(ok)
    with pytest.raises(DeployError):
        box.deploy(bad)
    *_, first, second = box.history
    assert first.argv == ["pyinfra", "@orb/box", str(ok)] and first.returncode == 0
    assert second.returncode == 1 and "operation failed: no" in second.stderr


def test_sudo_and_config_reach_pyinfra(box: Machine, orb: LocalOrb, tmp_path: Path) -> None:
    deploy = write_deploy(
        tmp_path / "cfg.py",
        """
        from pyinfra import config
        from pyinfra.operations import server

        server.shell(
            commands=[f'echo "{config.SUDO} {config.TEMP_DIR}" > cfg.txt'], _sudo=False
        )
        """,
    )
    box.deploy(deploy, config={"TEMP_DIR": "/tmp/a"})
    assert (home(orb, "box") / "cfg.txt").read_text() == "False /tmp/a\n"
    box.deploy(deploy, sudo=True, config={"TEMP_DIR": "/tmp/b"})
    assert (home(orb, "box") / "cfg.txt").read_text() == "True /tmp/b\n"


def test_orb_user_runs_commands_as_that_user(box: Machine, orb: LocalOrb, tmp_path: Path) -> None:
    deploy = write_deploy(
        tmp_path / "as_user.py",
        "from pyinfra.operations import server\nserver.shell(commands=['true'])\n",
    )
    box.deploy(deploy, orb_user="carol")
    runs = [c for c in orb.calls if c[0] == "run"]
    assert runs and all(c[3:5] == ["-u", "carol"] for c in runs)


# -- options and bad input -----------------------------------------------------------------------


def test_deploy_options_validate_data_and_config() -> None:
    assert deploy_options({"a": [1, {"b": None}]}, {"SUDO": True}) == (
        {"a": [1, {"b": None}]},
        {"SUDO": True},
    )
    assert deploy_options(None, None, sudo=True) == ({}, {"SUDO": True})
    with pytest.raises(ConfigError, match="set by pytest-orbstack"):
        deploy_options({"orb_name": "x"}, None)
    with pytest.raises(ConfigError, match="cannot be passed to a deploy"):
        deploy_options({"when": object()}, None)
    with pytest.raises(ConfigError, match="unknown pyinfra config NOT_A_SETTING"):
        deploy_options(None, {"NOT_A_SETTING": 1})
    with (
        requested_by(__file__, "tests/x.py::test_y"),
        pytest.raises(ConfigError, match=r"^tests/x.py::test_y: deploy data 'p'"),
    ):
        deploy_options({"p": Path("/")}, None)


def test_bad_targets_name_the_test_and_the_fix(box: Machine, tmp_path: Path) -> None:
    with requested_by(tmp_path / "test_here.py", "test_here.py::test_a"):
        with pytest.raises(TypeError, match=r"test_here.py::test_a: deploy\(42\): the target"):
            box.deploy(42)  # type: ignore[arg-type]
        with pytest.raises(FileNotFoundError) as info:
            box.deploy("deploys/missing.py")
    message = str(info.value)
    assert message.startswith("test_here.py::test_a: deploy file not found: 'deploys/missing.py'")
    assert str(tmp_path / "deploys" / "missing.py") in message
    assert "directory of test_here.py" in message
    with pytest.raises(TypeError, match="run_deploy"):
        check_target(None, "run_deploy")


def test_relative_paths_follow_the_requesting_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "suite" / "deploys").mkdir(parents=True)
    deploy = tmp_path / "suite" / "deploys" / "x.py"
    deploy.write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with requested_by(tmp_path / "suite" / "test_x.py", "test_x.py::t"):
        assert resolve_deploy_file("deploys/x.py") == deploy
    # In a test without requested_by: this test's own file (the plugin sets it).
    with pytest.raises(FileNotFoundError, match="directory of test_deploy_unit.py"):
        resolve_deploy_file("deploys/x.py")
    # Outside pytest: the current directory.
    monkeypatch.setattr(targets, "_current", None)
    with pytest.raises(FileNotFoundError, match="current directory") as info:
        resolve_deploy_file("deploys/x.py")
    assert str(elsewhere / "deploys" / "x.py") in str(info.value)


def test_marker_deploy_options(tmp_path: Path) -> None:
    deploy = tmp_path / "d.py"
    deploy.write_text("")
    where = "test_m.py::t: @pytest.mark.orbstack(...)"
    plain = build_spec({"deploy": "d.py"}, where=where, base_dir=tmp_path)
    with_data = build_spec(
        {"deploy": "d.py", "deploy_data": {"port": 1}, "deploy_config": {"SUDO": True}},
        where=where,
        base_dir=tmp_path,
    )
    assert with_data.deploy_data == {"port": 1} and with_data.deploy_config == {"SUDO": True}
    assert "deploy_data" not in plain.identity()  # old hashes stay as they were
    assert plain.slot() != with_data.slot()
    assert plain.base_hash() == with_data.base_hash()  # the machine before provisioning
    fp = deploy_fingerprint(deploy)
    assert deploy_fingerprint(deploy, data={"port": 1}) != fp
    assert deploy_fingerprint(deploy, config={"SUDO": True}) != fp
    for bad, text in [
        ({"deploy_data": {"a": 1}}, "applies to the marker's deploy="),
        ({"deploy": "d.py", "deploy_data": [1]}, "must be a dict"),
        ({"deploy": "d.py", "deploy_config": {"SUDOO": True}}, "unknown pyinfra config SUDOO"),
        ({"deploy": "d.py", "deploy_dta": {}}, "unknown argument"),
    ]:
        with pytest.raises(ConfigError, match=text) as info:
            build_spec(bad, where=where, base_dir=tmp_path)
        assert str(info.value).startswith(where)


def test_result_with_an_operation_that_did_not_run_is_not_ok() -> None:
    ran = OperationResult("a", changed=True, success=True)
    not_run = OperationResult("b", changed=False, success=False, executed=False)
    assert DeployResult("m", (ran,)).ok
    assert not DeployResult("m", (ran, not_run)).ok
    raised = OperationResult("c", changed=False, success=False, error="OperationError: no")
    assert raised.failed and "OperationError: no" in raised.describe()


# -- backend selection (the connector chooses as the plugin does) --------------------------------


def test_select_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "my-orbctl"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("ORBSTACK_ORBCTL", raising=False)
    assert select_executable("auto") is None
    sim = select_executable("sim")
    assert sim is not None and Path(sim).name == "orbsim"
    assert select_executable("sim", str(fake)) == str(fake)
    monkeypatch.setenv("ORBSTACK_ORBCTL", str(fake))
    assert select_executable("auto") == str(fake)


def _connect_script(name: str) -> str:
    return textwrap.dedent(
        f"""
        from pyinfra.api import Config, Inventory, State
        from pyinfra.api.exceptions import ConnectError
        inventory = Inventory(([("@orb/{name}", {{}})], {{}}))
        State(inventory, Config())
        try:
            inventory.get_host("@orb/{name}").connector.connect()
        except ConnectError as exc:
            print("ConnectError:", exc)
        """
    )


def test_connector_honours_orbstack_backend_sim(sim_free_env: dict[str, str]) -> None:
    env = {**sim_free_env, "ORBSTACK_BACKEND": "sim", "ORBSIM_HOME": sim_free_env["HOME"]}
    proc = subprocess.run(
        [sys.executable, "-c", _connect_script("no-such-machine")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # orbsim answered (the machine does not exist), so the simulator was found and asked.
    assert "does not exist" in proc.stdout, proc.stdout + proc.stderr


def test_connector_error_without_orbctl_names_the_simulator(sim_free_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _connect_script("web")],
        env=sim_free_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "cannot find the orbctl executable" in proc.stdout, proc.stdout + proc.stderr
    assert "ORBSTACK_BACKEND=sim" in proc.stdout


@pytest.fixture
def sim_free_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no orbctl on PATH and no ORBSTACK_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBSTACK_", "ORBSIM_HOME"))}
    env["PATH"] = str(tmp_path / "empty-path")
    env["HOME"] = str(tmp_path)
    return env


def test_deploy_code_never_imports_machine_or_pyinfra_cli() -> None:
    """The deploy package talks to machines through a Protocol (no machine.py <-> deploy cycle),
    and only the deploy process imports pyinfra_cli (gevent's monkey-patching)."""
    code = (
        "import sys\n"
        "import pytest_orbstack.deploy.runner, pytest_orbstack.deploy.fingerprint\n"
        "import pytest_orbstack.deploy.pyinfra_driver\n"
        "from pytest_orbstack.deploy import DeployResult, run_deploy\n"
        "print(sorted(m for m in sys.modules if m in "
        "('pytest_orbstack.machine', 'pyinfra_cli', 'pytest_orbstack.plugin')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def _callable_from(path: Path) -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"roles_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.deploy


CALLABLE_ROLE = """
from pyinfra import host
from pyinfra.operations import server

def deploy():
    server.shell(name="role", commands=[f"echo {host.data.get('role')} > role.txt"])
"""


def test_a_callable_inventory_deploy_refuses_a_group_data_directory_it_would_ignore(
    box: Machine, orb: LocalOrb, tmp_path: Path
) -> None:
    """pyinfra's API (a callable runs in-process) does not read ``group_data/*.py``; a directory
    of them next to the callable's module is an error before anything runs, not ignored."""
    from pytest_orbstack.deploy.runner import make_inventory

    plain, with_files = tmp_path / "plain", tmp_path / "with_files"
    for folder in (plain, with_files):
        folder.mkdir()
        (folder / "roles.py").write_text(CALLABLE_ROLE)
    (with_files / "group_data").mkdir()
    (with_files / "group_data" / "web.py").write_text('role = "from-file"\n')
    inventory = make_inventory({"web": ["box"]}, group_data={"web": {"role": "given"}})

    with pytest.raises(ConfigError, match=r"group_data .*\(web\.py\) is not read for a callable"):
        run_deploy([box], _callable_from(with_files / "roles.py"), inventory=inventory)
    assert not (home(orb, "box") / "role.txt").exists()  # nothing ran

    assert run_deploy([box], _callable_from(plain / "roles.py"), inventory=inventory)["box"].ok
    assert (home(orb, "box") / "role.txt").read_text() == "given\n"  # the marker's group data
