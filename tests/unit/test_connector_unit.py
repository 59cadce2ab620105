"""Unit tests of the ``@orb`` connector and the deploy helpers, without any real machine.

A tiny fake ``orbctl`` (written to ``tmp_path``) answers ``info``/``start``/``list`` from a state
directory and *executes* ``run``/``push``/``pull`` on this host (``run`` in a per-machine home
directory), logging every argv.  So these tests drive pyinfra end to end through the connector -
real subprocesses, no mocks - and check what reached ``orbctl``.  Privilege escalation needs a
real machine: see ``tests/sim/test_pyinfra_connector.py``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from io import BytesIO, StringIO
from pathlib import Path

import pytest

from pytest_orbstack.connector import OrbConnector, stdin_bytes, validate_machine_name
from pytest_orbstack.deploy import (
    DeployError,
    DeployResult,
    IdempotenceError,
    OperationResult,
    assert_idempotent,
    deploy_fingerprint,
    run_deploy,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import Orbctl

FAKE_ORBCTL = r"""
import json, os, shutil, subprocess, sys
from pathlib import Path

home = Path(os.environ["LOCAL_ORB_HOME"])
args = sys.argv[1:]
with open(home / "calls.jsonl", "a") as fh:
    fh.write(json.dumps(args) + "\n")

def machine_dir(name):
    return home / "machines" / name

def not_found(name):
    sys.stderr.write(f"[-32098] machine not found: '{name}'\n")
    sys.exit(1)

def record(name):
    state = (machine_dir(name) / "state").read_text().strip()
    return {"id": "01FAKE" + name.upper(), "name": name,
            "image": {"distro": "debian", "version": "bookworm", "arch": "amd64",
                      "variant": "default"},
            "config": {"isolated": False, "default_username": "user"},
            "builtin": False, "state": state}

def flags(rest):
    opts = {}
    while rest and rest[0].startswith("-"):
        opts[rest[0]] = rest[1]
        rest = rest[2:]
    return opts, rest

cmd, rest = args[0], args[1:]
if cmd == "info":
    name = rest[-1]
    if not machine_dir(name).is_dir():
        not_found(name)
    rec = record(name)
    info = {"record": rec, "disk_size": None}
    if rec["state"] == "running":
        info["ip4"] = "192.168.139.2"
    print(json.dumps(info))
elif cmd == "list":
    root = home / "machines"
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    print(json.dumps([record(n) for n in names]))
elif cmd == "start":
    for name in rest:
        if not machine_dir(name).is_dir():
            not_found(name)
        (machine_dir(name) / "state").write_text("running")
elif cmd == "run":
    opts, argv = flags(rest)
    name = opts["-m"]
    if not machine_dir(name).is_dir():
        sys.exit(1)
    (machine_dir(name) / "state").write_text("running")
    cwd = machine_dir(name) / "home"
    sys.exit(subprocess.run(argv, cwd=cwd).returncode)
elif cmd in ("push", "pull"):
    opts, paths = flags(rest)
    name = opts["-m"]
    cwd = machine_dir(name) / "home"
    proc = subprocess.run(["cp", "-rf", *paths], cwd=cwd)
    sys.exit(proc.returncode)
else:
    sys.stderr.write(f"Error: unknown command {cmd!r}\n")
    sys.exit(1)
"""


class LocalOrb:
    """Fake machines that run on this host, and the log of every orbctl call."""

    def __init__(self, root: Path) -> None:
        self.root = root
        exe = root / "orbctl"
        exe.write_text(f"#!{sys.executable}\n{FAKE_ORBCTL}")
        exe.chmod(0o755)
        self.executable = str(exe)

    def add(self, name: str, state: str = "running") -> Machine:
        d = self.root / "machines" / name
        (d / "home").mkdir(parents=True)
        (d / "state").write_text(state)
        return Machine(name, self.client())

    def client(self) -> Orbctl:
        return Orbctl(self.executable, env={"LOCAL_ORB_HOME": str(self.root)})

    def state(self, name: str) -> str:
        return (self.root / "machines" / name / "state").read_text()

    @property
    def calls(self) -> list[list[str]]:
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def orb(tmp_path: Path) -> LocalOrb:
    root = tmp_path / "orb"
    root.mkdir()
    return LocalOrb(root)


@pytest.fixture
def box(orb: LocalOrb) -> Machine:
    return orb.add("box")


def write_deploy(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


# -- inventory --------------------------------------------------------------------------------


def test_make_names_data_for_one_machine() -> None:
    assert list(OrbConnector.make_names_data("web-1")) == [
        ("@orb/web-1", {"orb_name": "web-1"}, ["@orb"])
    ]


@pytest.mark.parametrize("bad", ["-rf", "a b", "x;y", "", "a/b"])
def test_invalid_machine_names_are_inventory_errors(bad: str) -> None:
    from pyinfra.api.exceptions import InventoryError

    with pytest.raises(InventoryError, match="invalid machine name"):
        validate_machine_name(bad)


def test_bare_orb_lists_every_machine(orb: LocalOrb, monkeypatch: pytest.MonkeyPatch) -> None:
    orb.add("alpha")
    orb.add("beta", state="stopped")
    monkeypatch.setenv("ORBSTACK_ORBCTL", orb.executable)
    monkeypatch.setenv("LOCAL_ORB_HOME", str(orb.root))
    assert [n for n, _, _ in OrbConnector.make_names_data(None)] == ["@orb/alpha", "@orb/beta"]


def test_bare_orb_without_machines_is_an_error(
    orb: LocalOrb, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyinfra.api.exceptions import InventoryError

    (orb.root / "machines").mkdir()
    monkeypatch.setenv("ORBSTACK_ORBCTL", orb.executable)
    monkeypatch.setenv("LOCAL_ORB_HOME", str(orb.root))
    with pytest.raises(InventoryError, match="no machines"):
        list(OrbConnector.make_names_data(None))


def test_bare_orb_without_orbctl_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyinfra.api.exceptions import InventoryError

    monkeypatch.setenv("ORBSTACK_ORBCTL", "/nonexistent/orbctl")
    with pytest.raises(InventoryError, match="cannot find orbctl"):
        list(OrbConnector.make_names_data(None))


# -- stdin -----------------------------------------------------------------------------------


def test_stdin_follows_pyinfra_semantics() -> None:
    assert stdin_bytes(None) is None
    assert stdin_bytes("") is None
    assert stdin_bytes("a") == b"a\n"
    assert stdin_bytes("a\n") == b"a\n"
    assert stdin_bytes(["x", "y\n"]) == b"x\ny\n"
    assert stdin_bytes(StringIO("l1\nl2")) == b"l1\nl2\n"
    assert stdin_bytes(b"\x00raw") == b"\x00raw"


# -- end to end through pyinfra, on the fake ---------------------------------------------------


def test_shell_command_reaches_orbctl_as_one_sh_c_argument(
    orb: LocalOrb, box: Machine, tmp_path: Path
) -> None:
    out = tmp_path / "it's a $file; with spaces"
    weird = "quote ' double \" dollar $HOME semicolon ; backtick ` end"

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(name="write", commands=[f"printf %s {_q(weird)} > {_q(str(out))}"])

    result = run_deploy([box], deploy)["box"]
    assert result.ok and result.changed
    assert out.read_text() == weird
    runs = [c for c in orb.calls if c[0] == "run"]
    assert runs, orb.calls
    for call in runs:
        # run -m box -w "" sh -c <ONE argument>
        assert call[:6] == ["run", "-m", "box", "-w", "", "sh"]
        assert call[6] == "-c"
        assert len(call) == 8


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_put_file_from_stringio_bytesio_and_path(
    box: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Temporary files go to this test's own directories (host side and machine side): other
    # tests running at the same time (xdist) make and remove theirs in the shared /tmp.
    host_tmp, machine_tmp = tmp_path / "host-tmp", tmp_path / "machine-tmp"
    host_tmp.mkdir()
    machine_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(host_tmp))
    used: list[str] = []
    temp_path = OrbConnector._remote_temp_path

    def spy(self: OrbConnector, remote_temp_filename: str | None) -> str:
        used.append(temp_path(self, remote_temp_filename))
        return used[-1]

    monkeypatch.setattr(OrbConnector, "_remote_temp_path", spy)
    src = tmp_path / "src.txt"
    src.write_text("from a path\n")
    dest_dir = tmp_path / "dest dir $x"
    dest_dir.mkdir()

    def deploy() -> None:
        from pyinfra.operations import files

        files.put(src=StringIO("from StringIO ünïcode\n"), dest=str(dest_dir / "a.txt"))
        files.put(src=BytesIO(b"\x00\x01binary"), dest=str(dest_dir / "b.bin"))
        files.put(src=str(src), dest=str(dest_dir / "c'quote.txt"), mode="600")

    config = {"TEMP_DIR": str(machine_tmp)}
    result = run_deploy([box], deploy, config=config)["box"]
    assert result.ok, result
    assert len(used) == 3 and all(p.startswith(f"{machine_tmp}/") for p in used)
    assert list(host_tmp.iterdir()) == []  # temp files removed on both sides
    assert list(machine_tmp.iterdir()) == []
    assert (dest_dir / "a.txt").read_text(encoding="utf-8") == "from StringIO ünïcode\n"
    assert (dest_dir / "b.bin").read_bytes() == b"\x00\x01binary"
    assert (dest_dir / "c'quote.txt").read_text() == "from a path\n"
    assert oct((dest_dir / "c'quote.txt").stat().st_mode & 0o777) == "0o600"


def test_template_and_idempotence(box: Machine, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "templates").mkdir(parents=True)
    (project / "templates" / "app.conf.j2").write_text(
        "port = {{ port }}\nname = {{ host.data.app }}\n"
    )
    dest = tmp_path / "app.conf"
    deploy = write_deploy(
        project / "deploy.py",
        f"""
        from pyinfra import host
        from pyinfra.operations import files

        files.template(
            name="render app.conf",
            src="templates/app.conf.j2",
            dest={str(dest)!r},
            port=8080,
        )
        """,
    )
    first = run_deploy([box], deploy, data={"app": "demo"})["box"]
    assert first.changed
    assert dest.read_text() == "port = 8080\nname = demo\n"
    second = assert_idempotent(box, deploy, data={"app": "demo"})
    assert not second.changed
    assert [op.name for op in second.operations] == ["render app.conf"]


def test_non_idempotent_deploy_names_the_operation(box: Machine) -> None:
    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(name="always runs", commands=["true"])

    with pytest.raises(IdempotenceError, match="always runs") as info:
        assert_idempotent(box, deploy)
    assert isinstance(info.value, AssertionError)
    assert [op.name for op in info.value.changed_operations] == ["always runs"]


def test_failing_operation_raises_deploy_error_with_stderr(box: Machine, tmp_path: Path) -> None:
    marker = tmp_path / "after"

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(name="ok first", commands=["true"])
        server.shell(name="breaks", commands=["echo 'boom on stderr' >&2; exit 3"])
        server.shell(name="never", commands=[f"touch {_q(str(marker))}"])

    with pytest.raises(DeployError, match="breaks") as info:
        run_deploy([box], deploy)
    err = info.value
    assert "boom on stderr" in str(err)
    result = err.result
    assert [op.name for op in result.failed_operations] == ["breaks"]
    assert result.operation("breaks").stderr == "boom on stderr"
    assert [op.name for op in result.skipped_operations] == ["never"]
    assert result.operation("ok first").success
    assert not marker.exists()


def test_success_exit_codes_stdin_env_and_timeout(box: Machine, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(name="rc 3 is fine", commands=["exit 3"], _success_exit_codes=[0, 3])
        server.shell(
            name="stdin",
            commands=[f"cat > {_q(str(out))}"],
            _stdin=["line one", "line two"],
        )
        server.shell(
            name="env",
            commands=[f'printf %s "$GREETING" >> {_q(str(out))}'],
            _env={"GREETING": "hi 'there' $x"},
        )
        server.shell(name="slow", commands=["sleep 20"], _timeout=1)

    with pytest.raises(DeployError) as info:
        run_deploy([box], deploy)
    result = info.value.result
    assert result.operation("rc 3 is fine").success
    assert out.read_text() == "line one\nline two\nhi 'there' $x"
    slow = result.operation("slow")
    assert slow.failed
    assert any("timed out" in m for m in slow.messages), slow
    assert result.duration < 15


def test_get_file_into_path_and_stringio(box: Machine, tmp_path: Path) -> None:
    remote = tmp_path / "remote file ; $x"
    remote.write_text("remote content\n")
    local = tmp_path / "local copy"

    def deploy() -> None:
        from pyinfra.operations import files

        files.get(src=str(remote), dest=str(local))

    assert run_deploy([box], deploy)["box"].ok
    assert local.read_text() == "remote content\n"

    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all

    inventory = Inventory(([("@orb/box", {"orb_client": box.client})], {}))
    state = State(inventory, Config())
    connect_all(state)
    host = inventory.get_host("@orb/box")
    buf = StringIO()
    assert host.get_file(str(remote), buf)
    assert buf.getvalue() == "remote content\n"
    raw = BytesIO()
    assert host.get_file(str(remote), raw)
    assert raw.getvalue() == b"remote content\n"


def test_missing_machine_is_a_connect_error(orb: LocalOrb) -> None:
    ghost = Machine("ghost", orb.client())

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(commands=["true"])

    with pytest.raises(DeployError, match="ghost.*does not exist") as info:
        run_deploy([ghost], deploy)
    assert "cannot connect" in (info.value.result.error or "")


def test_connect_raises_connect_error_directly(orb: LocalOrb) -> None:
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.exceptions import ConnectError

    inventory = Inventory(([("@orb/ghost", {"orb_client": orb.client()})], {}))
    State(inventory, Config())
    host = inventory.get_host("@orb/ghost")
    with pytest.raises(ConnectError, match="does not exist"):
        host.connector.connect()


def test_stopped_machine_is_started_on_connect(orb: LocalOrb) -> None:
    sleepy = orb.add("sleepy", state="stopped")

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(commands=["true"])

    assert run_deploy([sleepy], deploy)["sleepy"].ok
    assert ["start", "sleepy"] in orb.calls
    assert orb.state("sleepy") == "running"


def test_several_machines_at_once(orb: LocalOrb, tmp_path: Path) -> None:
    machines = [orb.add(f"m{i}") for i in range(3)]

    def deploy() -> None:
        from pyinfra import host
        from pyinfra.operations import server

        server.shell(name="mark", commands=[f"touch {_q(str(tmp_path))}/{host.data.orb_name}.done"])

    results = run_deploy(machines, deploy)
    assert sorted(results) == ["m0", "m1", "m2"]
    assert all(r.ok and r.changed for r in results.values())
    assert sorted(p.name for p in tmp_path.glob("*.done")) == ["m0.done", "m1.done", "m2.done"]


def test_exception_in_deploy_code_is_a_deploy_error(box: Machine, tmp_path: Path) -> None:
    deploy = write_deploy(tmp_path / "broken.py", "raise RuntimeError('bad deploy code')\n")
    with pytest.raises(DeployError, match="bad deploy code") as info:
        run_deploy([box], deploy)
    assert "RuntimeError" in (info.value.result.error or "")


def test_fact_failure_is_a_deploy_error_with_the_reason(box: Machine) -> None:
    def deploy() -> None:
        from pyinfra import host
        from pyinfra.facts.server import Command

        host.get_fact(Command, command="echo fact-broke >&2; exit 2")

    with pytest.raises(DeployError, match="fact-broke") as info:
        run_deploy([box], deploy)
    assert "preparing operations" in (info.value.result.error or "")


def test_repeated_calls_restore_pyinfra_context(box: Machine) -> None:
    from pyinfra import context

    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(commands=["true"])

    before = (context.ctx_state.get(), context.ctx_host.get(), context.ctx_inventory.get())
    for _ in range(3):
        assert run_deploy([box], deploy)["box"].ok
    after = (context.ctx_state.get(), context.ctx_host.get(), context.ctx_inventory.get())
    assert before == after


def test_run_deploy_prints_nothing(box: Machine, capfd: pytest.CaptureFixture[str]) -> None:
    def deploy() -> None:
        from pyinfra.operations import server

        server.shell(commands=["echo to-stdout; echo to-stderr >&2"])
        server.shell(commands=["exit 1"], _ignore_errors=True)

    result = run_deploy([box], deploy)["box"]
    assert result.ok
    assert result.operations[0].stdout == "to-stdout"
    assert result.operations[1].ignored_error
    assert capfd.readouterr() == ("", "")


def test_pyinfra_cli_uses_the_connector(orb: LocalOrb, box: Machine, tmp_path: Path) -> None:
    """The real CLI (which monkey-patches with gevent) in a subprocess, on the fake."""
    import shutil
    import subprocess

    cli = shutil.which("pyinfra") or str(Path(sys.executable).with_name("pyinfra"))
    out = tmp_path / "cli out.txt"
    deploy = write_deploy(
        tmp_path / "deploy.py",
        f"""
        from io import StringIO
        from pyinfra import host
        from pyinfra.operations import files

        files.put(src=StringIO(host.data.word + "\\n"), dest={str(out)!r})
        """,
    )
    env = {**os.environ, "ORBSTACK_ORBCTL": orb.executable, "LOCAL_ORB_HOME": str(orb.root)}
    proc = subprocess.run(
        [cli, "@orb/box", str(deploy), "-y", "--data", "word=hello"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text() == "hello\n"


def test_missing_deploy_file(box: Machine, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="deploy file not found"):
        run_deploy([box], tmp_path / "nope.py")


# -- results and errors ------------------------------------------------------------------------


def test_result_properties() -> None:
    ops = (
        OperationResult("a", changed=True, success=True),
        OperationResult("b", changed=False, success=False, stderr="x"),
        OperationResult("c", changed=False, success=False, ignored_error=True),
        OperationResult("d", changed=False, success=False, executed=False),
    )
    res = DeployResult("m", ops)
    assert res.changed
    assert [o.name for o in res.failed_operations] == ["b"]
    assert [o.name for o in res.skipped_operations] == ["d"]
    assert not res.ok
    assert res.operation("c").ignored_error
    with pytest.raises(KeyError):
        res.operation("zzz")
    assert DeployResult("m", ops[:1]).ok


# -- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_follows_deploy_and_its_files(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "templates").mkdir(parents=True)
    (project / "__pycache__").mkdir()
    deploy = write_deploy(project / "deploy.py", "x = 'templates/a.j2'\n")
    (project / "templates" / "a.j2").write_text("one")
    first = deploy_fingerprint(deploy)
    assert len(first) == 64
    assert deploy_fingerprint(str(deploy)) == first
    (project / "__pycache__" / "deploy.cpython-311.pyc").write_bytes(b"junk")
    (project / ".hidden").write_text("ignored")
    assert deploy_fingerprint(deploy) == first
    (project / "templates" / "a.j2").write_text("two")
    second = deploy_fingerprint(deploy)
    assert second != first
    deploy.write_text("x = 'templates/a.j2'  # edited\n")
    assert deploy_fingerprint(deploy) != second
    assert deploy_fingerprint(deploy, data={"a": 1}) != deploy_fingerprint(deploy)


def test_fingerprint_includes_referenced_files_outside_the_tree(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "motd").write_text("hello")
    project = tmp_path / "p"
    project.mkdir()
    deploy = write_deploy(project / "deploy.py", "SRC = '../shared/motd'\n")
    before = deploy_fingerprint(deploy)
    (shared / "motd").write_text("changed")
    assert deploy_fingerprint(deploy) != before


def test_fingerprint_of_callables() -> None:
    def one() -> None:
        pass

    def two() -> None:
        pass

    assert deploy_fingerprint(one) == deploy_fingerprint(one)
    assert deploy_fingerprint(one) != deploy_fingerprint(two)
