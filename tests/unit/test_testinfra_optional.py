"""testinfra support without a machine: the optional extra, registration, the backend's argv.

``orbctl`` is replaced by tiny fakes: ``fake`` (scripted answers, from this directory's conftest)
checks the exact argv and replays exit codes and bytes; ``exec_orbctl`` runs the command part of
``orbctl run ...`` locally, so quoting is checked by a real ``/bin/sh``.  Tests with real
simulator machines are in ``tests/sim/test_testinfra.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import testinfra_backend as tb
from pytest_orbstack.errors import ConfigError, MachineNotFoundError
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import Orbctl

REPO = Path(__file__).resolve().parents[2]

# Installed first on sys.meta_path: every ``import testinfra...`` fails as if not installed.
BLOCKER = textwrap.dedent(
    """
    import sys

    class _NoTestinfra:
        def find_spec(self, name, path=None, target=None):
            if name == "testinfra" or name.startswith("testinfra."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoTestinfra())
    """
)

EXEC_ORBCTL = textwrap.dedent(
    """\
    import json, os, subprocess, sys
    argv = sys.argv[1:]
    with open(os.environ["EXEC_ORBCTL_LOG"], "a") as fh:
        fh.write(json.dumps(argv) + "\\n")
    if argv[0] == "info":
        sys.stdout.write(json.dumps({"record": {"id": "x", "name": argv[-1], "state": "running",
                                                "image": {}, "config": {}}}))
        sys.exit(0)
    assert argv[0] == "run", argv
    i = 1
    while argv[i] in ("-m", "-u", "-w"):
        i += 2
    sys.exit(subprocess.call(argv[i:], stdin=subprocess.DEVNULL))
    """
)


def unique(prefix: str = "box") -> str:
    # testinfra caches Host objects per host spec for the whole process.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def exec_orbctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    script = tmp_path / "exec_orbctl.py"
    script.write_text(EXEC_ORBCTL)
    exe = tmp_path / "orbctl"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    exe.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("EXEC_ORBCTL_LOG", str(log))
    return str(exe), log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def testinfra() -> Any:
    return pytest.importorskip("testinfra")


# -- without pytest-testinfra --------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )


def test_plugin_imports_and_works_without_testinfra() -> None:
    proc = run_python(
        """
        import sys
        import pytest_orbstack
        from pytest_orbstack import testinfra_backend, fixtures_testinfra
        from pytest_orbstack.machine import Machine
        from pytest_orbstack.orbctl import Orbctl
        import pytest_orbstack.plugin
        assert pytest_orbstack.Machine is Machine
        assert not testinfra_backend.testinfra_available()
        assert testinfra_backend.register_orb_backend() is False
        assert not [m for m in sys.modules if m.split(".")[0] == "testinfra"], "imported"
        m = Machine("box", Orbctl("/bin/true"))
        assert m.run(["true"]).ok
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


def test_machine_host_without_testinfra_names_the_extra() -> None:
    proc = run_python(
        """
        from pytest_orbstack.machine import Machine
        from pytest_orbstack.orbctl import Orbctl
        from pytest_orbstack.errors import OrbstackError
        from pytest_orbstack.testinfra_backend import MissingTestinfraError
        try:
            Machine("box", Orbctl("/bin/true")).host
        except MissingTestinfraError as exc:
            assert isinstance(exc, ImportError) and isinstance(exc, OrbstackError)
            print(exc)
        else:
            raise SystemExit("no error")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "Machine.host needs pytest-testinfra, but pytest-testinfra is not installed. "
        "Install the extra: pip install 'pytest-orbstack[testinfra]'"
    )


def test_pytest_session_without_testinfra(tmp_path: Path) -> None:
    """A whole pytest run with the plugin and testinfra blocked: only orb_host fails, with the
    hint (autoload is off, so pytest-testinfra's own entry point is not loaded either)."""
    (tmp_path / "test_x.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from pytest_orbstack.machine import Machine
            from pytest_orbstack.orbctl import Orbctl

            @pytest.fixture
            def orb_vm():
                return Machine("box", Orbctl("/bin/true"))

            def test_plain(orb_vm):
                assert orb_vm.name == "box"

            def test_orb_host(orb_host):
                pass
            """
        )
    )
    plugins = ["-p", "pytest_orbstack.plugin"]  # registers orb_host itself
    proc = run_python(
        f"""
        import sys, pytest
        sys.exit(pytest.main({[str(tmp_path), "-q", "-p", "no:cacheprovider", *plugins]!r}))
        """
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "1 error" in proc.stdout, proc.stdout
    assert "pip install 'pytest-orbstack[testinfra]'" in proc.stdout


# -- registration --------------------------------------------------------------------------------


def test_register_adds_the_orb_scheme(testinfra: Any) -> None:
    import testinfra.backend

    assert tb.register_orb_backend() is True
    assert tb.register_orb_backend() is True  # idempotent
    assert testinfra.backend.BACKENDS["orb"] == tb.BACKEND_CLASSPATH
    cls = testinfra.backend.get_backend_class("orb")
    assert cls is tb.backend_class()
    assert cls.__module__ == "pytest_orbstack.testinfra_orb"
    assert cls.__name__ == "OrbBackend"
    assert cls.get_connection_type() == "orb"
    from testinfra.backend.base import BaseBackend

    assert issubclass(cls, BaseBackend)
    from pytest_orbstack.testinfra_orb import OrbBackend

    assert OrbBackend is cls


def test_register_leaves_a_foreign_orb_backend_alone(
    testinfra: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import testinfra.backend

    monkeypatch.setitem(testinfra.backend.BACKENDS, "orb", "somewhere.Else")
    assert tb.register_orb_backend() is False
    assert testinfra.backend.BACKENDS["orb"] == "somewhere.Else"


def test_hostspec_parameters(testinfra: Any, fake: Any) -> None:
    tb.register_orb_backend()
    name = unique()
    host = testinfra.get_host(
        f"orb://alice@{name}?sudo=true&sudo_user=bob&timeout=7", orbctl=fake.client()
    )
    backend = host.backend
    assert (backend.name, backend.user, backend.sudo, backend.sudo_user) == (
        name,
        "alice",
        True,
        "bob",
    )
    assert backend.timeout == 7.0
    assert backend.get_pytest_id() == f"orb://alice@{name}"
    assert backend.get_hostname() == name
    plain = testinfra.get_host(f"orb://{name}", orbctl=fake.client()).backend
    assert (plain.user, plain.sudo, plain.timeout) == (None, False, None)
    assert plain.get_pytest_id() == f"orb://{name}"


@pytest.mark.parametrize("spec", ["orb://", "orb://alice@"])
def test_hostspec_without_a_machine_is_refused(testinfra: Any, spec: str) -> None:
    tb.register_orb_backend()
    with pytest.raises(ConfigError, match=r"orb://\[user@\]NAME"):
        testinfra.get_hosts([spec])


# -- commands ------------------------------------------------------------------------------------


def test_command_argv_and_results(testinfra: Any, fake: Any) -> None:
    tb.register_orb_backend()
    name = unique()
    fake.expect("run", rc=3, stdout="h\u00e9llo\n", stderr="warn\n")
    host = testinfra.get_host(f"orb://alice@{name}", orbctl=fake.client())
    out = host.run("printf %s", "a b;c")
    assert fake.calls == [
        ["run", "-m", name, "-u", "alice", "-w", "", "/bin/sh", "-c", "printf 'a b;c'"]
    ]
    assert (out.rc, out.stdout, out.stderr) == (3, "h\u00e9llo\n", "warn\n")
    assert out.stdout_bytes == "h\u00e9llo\n".encode()
    assert out.command == b"printf 'a b;c'"
    assert out.failed


def test_sudo_wrapping(testinfra: Any, fake: Any) -> None:
    tb.register_orb_backend()
    name = unique()
    for _ in range(4):
        fake.expect("run")
    host = testinfra.get_host(f"orb://{name}", orbctl=fake.client())
    with host.sudo():
        host.run("id -u")
        with host.sudo("bob"):
            host.run("id -un")
    host.run("id -u")
    sudo_host = testinfra.get_host(f"orb://{name}?sudo=true", orbctl=fake.client())
    sudo_host.run("whoami")
    scripts = [argv[-1] for argv in fake.calls]
    assert scripts == [
        "sudo /bin/sh -c 'id -u'",
        # testinfra nests: root's shell runs sudo -u bob (what its docker backend sends too)
        "sudo /bin/sh -c 'sudo -u bob /bin/sh -c '\"'\"'id -un'\"'\"''",
        "id -u",
        "sudo /bin/sh -c whoami",
    ]
    assert all(argv[:5] == ["run", "-m", name, "-w", ""] for argv in fake.calls)


def test_metacharacters_reach_the_shell_intact(testinfra: Any, exec_orbctl: Any) -> None:
    tb.register_orb_backend()
    exe, log = exec_orbctl
    tricky = "a b;c|d&e $(echo no) `echo no` 'q' \"dq\" * ? \\ \n end"
    host = testinfra.get_host(f"orb://{unique()}", orbctl=Orbctl(exe))
    assert host.check_output("printf '%%s' %s", tricky) == tricky
    assert host.run("exit 5").rc == 5
    assert host.run_expect([0, 1], "false").rc == 1
    with pytest.raises(AssertionError, match="Unexpected exit code 2"):
        host.check_output("echo out; exit 2")


def test_orbctl_comes_from_the_environment(
    testinfra: Any, exec_orbctl: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tb.register_orb_backend()
    exe, log = exec_orbctl
    monkeypatch.setenv("ORBSTACK_ORBCTL", exe)
    name = unique()
    assert testinfra.get_host(f"orb://{name}").check_output("echo hi") == "hi"
    assert calls(log) == [["run", "-m", name, "-w", "", "/bin/sh", "-c", "echo hi"]]


def test_client_factory_from_registration(
    testinfra: Any, fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tb, "_client_factory", None)
    monkeypatch.setenv("ORBSTACK_ORBCTL", "/nonexistent/orbctl")
    tb.register_orb_backend(client_factory=fake.client)
    fake.expect("run", stdout="ok\n")
    assert testinfra.get_host(f"orb://{unique()}").check_output("true") == "ok"


def test_no_orbctl_is_a_clear_error(testinfra: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tb.register_orb_backend()
    monkeypatch.setattr(tb, "_client_factory", None)
    monkeypatch.setenv("ORBSTACK_ORBCTL", "/nonexistent/orbctl")
    host = testinfra.get_host(f"orb://{unique()}")
    with pytest.raises(ConfigError, match="ORBSTACK_ORBCTL"):
        host.run("true")


def test_unknown_machine_is_reported_as_such(testinfra: Any, fake: Any) -> None:
    tb.register_orb_backend()
    name = unique()
    missing = f"[-32098] machine not found: '{name}'\n"
    fake.expect("run", rc=1).expect("info", rc=1, stderr=missing)
    host = testinfra.get_host(f"orb://{name}", orbctl=fake.client())
    with pytest.raises(MachineNotFoundError, match=f"orb://{name}: no such machine"):
        host.run("test -e /nothing")


def test_a_failing_command_on_a_real_machine_is_checked_once(testinfra: Any, fake: Any) -> None:
    tb.register_orb_backend()
    name = unique()
    info = json.dumps({"record": {"id": "1", "name": name, "state": "running", "image": {}}})
    fake.expect("run", rc=1).expect("info", stdout=info).expect("run", rc=1)
    host = testinfra.get_host(f"orb://{name}", orbctl=fake.client())
    assert host.run("test -e /nothing").rc == 1
    assert host.run("test -e /nothing").rc == 1
    assert [argv[0] for argv in fake.calls] == ["run", "info", "run"]


def test_machine_host_is_cached_and_recorded(testinfra: Any, exec_orbctl: Any) -> None:
    exe, log = exec_orbctl
    machine = Machine(unique(), Orbctl(exe))
    seen: list[Any] = []
    machine.on_run = seen.append
    host = machine.host
    assert host is machine.host
    assert type(host).__module__ == "testinfra.host"
    assert host.backend.get_pytest_id() == f"orb://{machine.name}"
    assert host.run("echo out; echo err >&2; exit 4").rc == 4
    (record,) = machine.history
    assert record.argv == ["/bin/sh", "-c", "echo out; echo err >&2; exit 4"]
    assert (record.returncode, record.stdout, record.stderr) == (4, "out\n", "err\n")
    assert seen == [record]
    # A Machine is known to exist: a failure costs no extra info call.
    assert [argv[0] for argv in calls(log)] == ["run"]


def test_host_for_options(testinfra: Any, fake: Any) -> None:
    machine = Machine(unique(), fake.client())
    host = tb.host_for(machine, user="root", sudo=True, sudo_user="bob")
    assert host is not machine.host
    fake.expect("run")
    host.run("true")
    (argv,) = fake.calls
    assert argv[:6] == ["run", "-m", machine.name, "-u", "root", "-w"]
    assert argv[6:] == ["", "/bin/sh", "-c", "sudo -u bob /bin/sh -c true"]


def test_hosts_option_in_a_pytest_run(
    testinfra: Any, exec_orbctl: Any, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """testinfra's own ``--hosts`` accepts orb:// hosts (``[user@]NAME``)."""
    exe, log = exec_orbctl
    pytester.makeconftest(
        """
        from pytest_orbstack.testinfra_backend import register_orb_backend

        def pytest_configure(config):
            register_orb_backend()
        """
    )
    pytester.makepyfile(
        test_suite="""
        def test_echo(host):
            assert host.backend.get_connection_type() == "orb"
            assert host.check_output("echo %s", "$HOME;x") == "$HOME;x"
        """
    )
    names = [unique(), unique()]
    monkeypatch.setenv("ORBSTACK_ORBCTL", exe)
    result = pytester.runpytest_subprocess(
        f"--hosts=orb://{names[0]},orb://root@{names[1]}", "-v", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [f"*test_echo?orb://{names[0]}? PASSED*", f"*test_echo?orb://root@{names[1]}? PASSED*"]
    )
    assert sorted(argv[:5] for argv in calls(log)) == sorted(
        [["run", "-m", names[0], "-w", ""], ["run", "-m", names[1], "-u", "root"]]
    )
