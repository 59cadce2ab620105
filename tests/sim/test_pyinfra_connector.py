"""The ``@orb`` pyinfra connector on real simulator machines.

One machine is shared by the module (the tests write distinct paths).  Every effect is checked by
reading the machine with ``Machine.run``, not from pyinfra's report.  The last tests stop the
machine (connect must start it) and drive the real ``pyinfra`` CLI as a subprocess.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest

from pytest_orbstack.deploy import DeployError, run_deploy
from pytest_orbstack.machine import Machine
from tests.conftest import SimHome, module_machine, read, stat

WEIRD = 'it\'s "quoted" $HOME `uname`; echo pwned & | > < * ? ~ #'


@pytest.fixture(scope="module")
def vm(sim_home: SimHome) -> Iterator[Machine]:
    yield from module_machine(sim_home, "conn")


def no_temp_files_left(vm: Machine) -> bool:
    out = vm.run(["sh", "-c", "ls -a /tmp"], user="root", check=True).stdout
    return "pyinfra-orb-" not in out


def test_shell_arguments_reach_the_machine_intact(vm: Machine) -> None:
    target = "/tmp/conn shell 'out' $x; y.txt"

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(
            name="printf weird",
            commands=[f"printf %s {shlex.quote(WEIRD)} > {shlex.quote(target)}"],
        )

    result = run_deploy([vm], deploy)[vm.name]
    assert result.ok and result.changed
    assert read(vm, target) == WEIRD


def test_put_file_from_stringio_path_and_root_owned_destination(
    vm: Machine, tmp_path: Path
) -> None:
    local = tmp_path / "local file.txt"
    local.write_text("from a host path\n")

    def deploy() -> None:
        from pyinfra.operations import files

        files.put(name="io", src=StringIO("from StringIO ✓\n"), dest="/tmp/conn-io.txt")
        files.put(name="path", src=str(local), dest="/tmp/conn-path.txt")
        files.put(
            name="root",
            src=StringIO("root owned\n"),
            dest="/etc/conn-root.conf",
            mode="600",
            _sudo=True,
        )
        files.put(
            name="weird name",
            src=StringIO("weird\n"),
            dest=f"/tmp/{WEIRD.replace('/', '_')}",
        )

    result = run_deploy([vm], deploy)[vm.name]
    assert result.ok, result
    assert read(vm, "/tmp/conn-io.txt") == "from StringIO ✓\n"
    assert read(vm, "/tmp/conn-path.txt") == "from a host path\n"
    assert read(vm, "/etc/conn-root.conf") == "root owned\n"
    assert stat(vm, "/etc/conn-root.conf") == "root root 600"
    default_user = vm.run(["id", "-un"], check=True).stdout.strip()
    assert stat(vm, "/tmp/conn-io.txt").startswith(f"{default_user} ")
    assert read(vm, f"/tmp/{WEIRD.replace('/', '_')}") == "weird\n"
    assert no_temp_files_left(vm)


def test_root_owned_destination_without_sudo_fails_with_the_reason(vm: Machine) -> None:
    def deploy() -> None:
        from pyinfra.operations import files

        files.put(name="no sudo", src=StringIO("x\n"), dest="/etc/conn-denied.conf")

    with pytest.raises(DeployError, match="no sudo") as info:
        run_deploy([vm], deploy)
    assert "Permission denied" in str(info.value)
    assert vm.run(["test", "-e", "/etc/conn-denied.conf"]).returncode == 1
    assert no_temp_files_left(vm)


def test_get_file_with_sudo(vm: Machine, tmp_path: Path) -> None:
    dest = tmp_path / "shadow copy"

    def deploy() -> None:
        from pyinfra.operations import files

        files.get(name="get shadow", src="/etc/shadow", dest=str(dest), _sudo=True)

    assert run_deploy([vm], deploy)[vm.name].ok
    assert dest.read_text().startswith("root:")
    assert no_temp_files_left(vm)


def test_sudo_user_and_su_user(vm: Machine, tmp_path: Path) -> None:
    fetched = tmp_path / "fetched"

    def deploy() -> None:
        from pyinfra.operations import files, server

        server.user(name="bob", user="bob", create_home=True, _sudo=True)
        server.shell(
            name="as bob via sudo",
            commands=["whoami > /tmp/conn-sudo-user; pwd >> /tmp/conn-sudo-user"],
            _sudo=True,
            _sudo_user="bob",
            _chdir="/home/bob",
        )
        server.shell(
            name="as bob via su",
            commands=["whoami > /tmp/conn-su-user"],
            _sudo=True,
            _su_user="bob",
        )
        files.put(
            name="upload as bob",
            src=StringIO("bob's file\n"),
            dest="/home/bob/uploaded by bob.txt",
            _sudo=True,
            _sudo_user="bob",
        )
        files.get(
            name="download as bob",
            src="/home/bob/uploaded by bob.txt",
            dest=str(fetched),
            _sudo=True,
            _sudo_user="bob",
        )

    assert run_deploy([vm], deploy)[vm.name].ok
    assert stat(vm, "/home/bob/uploaded by bob.txt").startswith("bob bob ")
    assert fetched.read_text() == "bob's file\n"
    assert no_temp_files_left(vm)
    assert read(vm, "/tmp/conn-sudo-user") == "bob\n/home/bob\n"
    assert stat(vm, "/tmp/conn-sudo-user").startswith("bob ")
    assert read(vm, "/tmp/conn-su-user") == "bob\n"


def test_stdin_env_success_exit_codes_and_timeout(vm: Machine) -> None:
    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(name="exit 3 is success", commands=["exit 3"], _success_exit_codes=[3])
        server.shell(
            name="stdin",
            commands=["cat > /tmp/conn-stdin"],
            _stdin=["first line", "second 'line' $x"],
        )
        server.shell(
            name="env",
            commands=['printf %s "$ORB_GREETING" > /tmp/conn-env'],
            _env={"ORB_GREETING": "hi 'there'; $x"},
            _sudo=True,
            _preserve_sudo_env=True,
        )
        server.shell(name="too slow", commands=["sleep 30"], _timeout=2)

    with pytest.raises(DeployError, match="too slow") as info:
        run_deploy([vm], deploy)
    result = info.value.result
    assert result.operation("exit 3 is success").success
    assert read(vm, "/tmp/conn-stdin") == "first line\nsecond 'line' $x\n"
    assert read(vm, "/tmp/conn-env") == "hi 'there'; $x"
    slow = result.operation("too slow")
    assert slow.failed
    assert any("timed out" in message for message in slow.messages)
    assert result.duration < 25  # killed after ~2s, not after sleep's 30s


def test_missing_machine_is_a_connect_error(sim_home) -> None:  # type: ignore[no-untyped-def]
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.exceptions import ConnectError

    ghost = Machine("no-such-machine-here", sim_home.client())

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(commands=["true"])

    with pytest.raises(DeployError, match="does not exist"):
        run_deploy([ghost], deploy)

    inventory = Inventory(([("@orb/no-such-machine-here", {"orb_client": ghost.client})], {}))
    State(inventory, Config())
    with pytest.raises(ConnectError, match="no-such-machine-here.*does not exist"):
        inventory.get_host("@orb/no-such-machine-here").connector.connect()


def pyinfra_cli() -> str:
    found = shutil.which("pyinfra") or str(Path(sys.executable).with_name("pyinfra"))
    if not Path(found).exists():
        pytest.skip("the pyinfra CLI is not installed")
    return found


def test_cli_deploy_on_a_stopped_machine(vm: Machine, sim_home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vm.client.stop(vm.name)
    assert vm.info().state == "stopped"
    deploy = tmp_path / "cli deploy.py"
    deploy.write_text(
        textwrap.dedent(
            """
            from io import StringIO
            from pyinfra import host
            from pyinfra.operations import files, server

            files.put(
                name="cli put",
                src=StringIO("via the CLI: " + host.data.get("word", "none") + "\\n"),
                dest="/etc/conn-cli.txt",
                _sudo=True,
            )
            server.shell(name="cli shell", commands=["hostname > /tmp/conn-cli-hostname"])
            """
        )
    )
    env = {**os.environ, **sim_home.env, "ORBSTACK_ORBCTL": sim_home.executable}
    proc = subprocess.run(
        [pyinfra_cli(), f"@orb/{vm.name}", str(deploy), "-y", "--data", "word=bird"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert vm.info().state == "running"
    assert read(vm, "/etc/conn-cli.txt") == "via the CLI: bird\n"
    assert stat(vm, "/etc/conn-cli.txt").startswith("root root")
    assert read(vm, "/tmp/conn-cli-hostname").strip() == vm.name


def test_cli_reports_a_missing_machine(sim_home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deploy = tmp_path / "deploy.py"
    deploy.write_text("from pyinfra.operations import server\nserver.shell(commands=['true'])\n")
    env = {**os.environ, **sim_home.env, "ORBSTACK_ORBCTL": sim_home.executable}
    proc = subprocess.run(
        [pyinfra_cli(), "@orb/no-such-machine-here", str(deploy), "-y"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "does not exist" in proc.stdout + proc.stderr


def test_uploads_do_not_depend_on_the_owner_push_leaves(vm: Machine, tmp_path: Path) -> None:
    """docs/orbctl-contract.md §16: 2.2's push may leave another owner and mode.  With a push
    that leaves root:root 0600 the upload gives the same file as with the default-user model:
    the connector sets owner and mode explicitly after push."""
    from pytest_orbstack.orbctl import Orbctl

    wrapper = Path(__file__).with_name("root_push_orbctl.py")
    client = Orbctl(wrapper, env={**(vm.client.env or {}), "ROOT_PUSH_REAL": vm.client.executable})
    other = Machine(vm.name, client)
    vm.run(["rm", "-f", "/tmp/conn-model-a.txt", "/tmp/conn-model-b.txt"], user="root")

    def deploy(dest: str) -> None:
        from pyinfra.operations import files

        files.put(name="model", src=StringIO("same either way\n"), dest=dest)

    for machine, dest in ((vm, "/tmp/conn-model-a.txt"), (other, "/tmp/conn-model-b.txt")):
        result = run_deploy([machine], lambda dest=dest: deploy(dest))[vm.name]
        assert result.ok, result
    assert read(vm, "/tmp/conn-model-b.txt") == "same either way\n"
    assert stat(vm, "/tmp/conn-model-b.txt") == stat(vm, "/tmp/conn-model-a.txt")
    default_user = vm.run(["id", "-un"], check=True).stdout.strip()
    assert stat(vm, "/tmp/conn-model-b.txt") == f"{default_user} {default_user} 644"
    assert no_temp_files_left(vm)
