"""testinfra on real simulator machines: ``Machine.host``, ``orb://`` hosts, ``orb_host``.

One machine for the whole module (the tests use distinct users, files and packages, so they do
not interfere); the ``--hosts`` and ``orb_host`` runs use the same machine from a pytester
subprocess.  Simulated machines run systemd as PID 1, so ``host.service`` is testinfra's systemd
implementation, as on OrbStack.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_orbstack.machine import Machine
from pytest_orbstack.testinfra_backend import host_for

testinfra = pytest.importorskip("testinfra")

TRICKY = (
    "a b;c|d&e>f<g $(id -u) `id -u` ${HOME} 'single' \"double\" * ? ~ \\back\n2nd line \u00e9\u2713"
)


@pytest.fixture(scope="module")
def machine(sim_home: Any) -> Iterator[Machine]:
    client = sim_home.client()
    name = sim_home.unique_name("ti")
    client.create("debian:bookworm", name)
    try:
        yield Machine(name, client)
    finally:
        client.delete(name)


@pytest.fixture(scope="module")
def host(machine: Machine) -> Any:
    # Deliberately shadows pytest-testinfra's ``host`` fixture for this module: the documented
    # opt-in recipe (docs/testinfra.md) - testinfra's own parametrisation is then not involved.
    return machine.host


@pytest.fixture(scope="module")
def alice(machine: Machine) -> str:
    machine.run(
        ["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "adm,sudo", "alice"],
        user="root",
        check=True,
    )
    return "alice"


def root(machine: Machine, script: str) -> None:
    machine.run(script, user="root", check=True)


def test_machine_host_is_one_testinfra_host(machine: Machine, host: Any) -> None:
    assert machine.host is host
    assert isinstance(host, testinfra.host.Host)
    assert host.backend.get_pytest_id() == f"orb://{machine.name}"
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == "bookworm"


def test_run_exit_codes_and_output(host: Any) -> None:
    out = host.run("echo out; echo err >&2; exit 3")
    assert (out.rc, out.stdout, out.stderr) == (3, "out\n", "err\n")
    assert out.failed and not out.succeeded
    assert host.run("true").rc == 0
    assert host.run("exit 255").rc == 255
    assert host.check_output("printf 'a\\nb\\n'") == "a\nb"
    assert host.run_expect([0, 1], "grep -q nothing-like-this /etc/hostname").rc == 1
    assert host.run_test("test -d /etc").rc == 0
    with pytest.raises(AssertionError, match="Unexpected exit code 2"):
        host.check_output("ls /nonexistent")
    with pytest.raises(AssertionError):
        host.run_expect([0], "exit 7")
    assert host.exists("ls") and not host.exists("no-such-command")
    assert host.find_command("ip") in {"/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"}


def test_command_runs_as_the_default_user_in_its_home(machine: Machine, host: Any) -> None:
    user = machine.default_user
    assert user
    assert host.user().name == user
    assert host.check_output("pwd") == host.user().home


def test_shell_metacharacters_reach_the_machine_intact(machine: Machine, host: Any) -> None:
    assert host.check_output("printf '%%s' %s", TRICKY) == TRICKY
    with host.sudo():
        assert host.check_output("printf '%%s' %s", TRICKY) == TRICKY
    target = "/tmp/x; touch pwned $(touch pwned2)"
    host.run_expect([0], "touch %s", target)
    assert host.file(target).is_file
    home = host.user().home
    assert not host.file(f"{home}/pwned").exists
    assert not host.file(f"{home}/pwned2").exists
    # testinfra's quoting plus ours: what Machine.run gives as an argv list arrives the same way.
    assert machine.run(["printf", "%s", TRICKY]).stdout == TRICKY


def test_result_command_is_the_text_sent_whatever_the_machine_locale(machine: Machine) -> None:
    # A machine whose locale is not UTF-8 (testinfra asks the machine's python3 for it): the
    # output is decoded that way, but the command went out as the host encoded the argv
    # (UTF-8), and the result says what was sent.
    fake = "/usr/local/bin/python3"
    root(machine, f"printf '#!/bin/sh\\necho ISO-8859-1\\n' >{fake} && chmod +x {fake}")
    try:
        host = host_for(machine)
        result = host.run("printf '%%s' %s", "caf\u00e9")
        sent = machine.history[-1].argv[-1]
        assert host.backend.encoding == "ISO-8859-1"
    finally:
        root(machine, f"rm -f {fake}")
    assert result.rc == 0
    assert result.command == "printf '%s' 'caf\u00e9'".encode()
    assert result.command.decode() == sent  # what ran, byte for byte
    assert result.stdout_bytes == "caf\u00e9".encode()


def test_sudo_contexts(machine: Machine, host: Any, alice: str) -> None:
    default_uid = host.check_output("id -u")
    with host.sudo():
        assert host.check_output("id -u") == "0"
        assert host.user().name == "root"
        with host.sudo(alice):
            assert host.check_output("whoami") == alice
        assert host.check_output("whoami") == "root"
    with host.sudo(alice):
        assert host.check_output("whoami") == alice
        assert host.check_output("echo $HOME") == "/home/alice"
    assert host.check_output("id -u") == default_uid
    # A host created with sudo on (as testinfra's --sudo / ?sudo=true would) ...
    sudo_host = host_for(machine, sudo=True, sudo_user=alice)
    assert sudo_host.check_output("whoami") == alice
    # ... and one whose orbctl user is root (orb://root@NAME).
    root_host = host_for(machine, user="root")
    assert root_host.check_output("id -u") == "0"
    assert root_host.check_output("pwd") == "/root"


def test_package_installed_with_apt_is_seen(machine: Machine, host: Any) -> None:
    assert host.package("sudo").is_installed
    assert not host.package("tree").is_installed
    root(
        machine,
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -qq --no-install-recommends tree",
    )
    tree = host.package("tree")
    assert tree.is_installed
    version = machine.run(["dpkg-query", "-W", "-f", "${Version}", "tree"]).stdout
    assert tree.version == version
    assert host.exists("tree")


def test_file_owner_and_mode(machine: Machine, host: Any, alice: str) -> None:
    root(
        machine,
        "groupadd --force appsecret && "
        "install -d -o alice -g appsecret -m 2750 /srv/app && "
        "printf 'secret=1\\n' > /srv/app/app.conf && "
        "chown root:appsecret /srv/app/app.conf && chmod 0640 /srv/app/app.conf && "
        "ln -sf /srv/app/app.conf /etc/app.conf",
    )
    d = host.file("/srv/app")
    assert d.is_directory
    assert (d.user, d.group, d.mode) == ("alice", "appsecret", 0o2750)
    # The default user is not in appsecret: it cannot even look inside /srv/app ...
    assert not host.file("/srv/app/app.conf").exists
    assert host.run("cat /srv/app/app.conf").rc == 1
    # ... root can.
    with host.sudo():
        conf = host.file("/srv/app/app.conf")
        assert conf.is_file
        assert (conf.user, conf.group, conf.mode) == ("root", "appsecret", 0o640)
        assert conf.content_string == "secret=1\n"
        assert conf.contains("^secret=")
        link = host.file("/etc/app.conf")
        assert link.is_symlink and link.linked_to == "/srv/app/app.conf"
    # A file written by the default user belongs to it, with its umask's mode.
    host.run_expect([0], "echo hi > mine.txt")
    mine = host.file(host.user().home + "/mine.txt")
    assert (mine.user, mine.group) == (host.user().name, host.user().group)
    assert mine.mode == 0o644
    assert mine.content_string == "hi\n"


def test_user_groups_and_shell(host: Any, alice: str) -> None:
    user = host.user(alice)
    assert user.exists
    assert user.shell == "/bin/bash"
    assert user.home == "/home/alice"
    assert user.group == "alice"
    assert set(user.groups) == {"alice", "adm", "sudo"}
    assert host.group("adm").exists
    assert alice in host.group("sudo").members
    assert not host.user("nobody-here").exists
    assert host.user("root").uid == 0


def test_process(machine: Machine, host: Any) -> None:
    marker = "4321"
    host.run_expect([0], "nohup sleep %s >/dev/null 2>&1 &", marker)
    try:
        procs = host.process.filter(comm="sleep")
        assert [p.args for p in procs if p.args == f"sleep {marker}"]
        assert host.process.get(pid=1).pid == 1
    finally:
        host.run("pkill -f %s", f"[s]leep {marker}")


def test_socket(machine: Machine, host: Any) -> None:
    # The simulator shares the host's network, so pick a port nobody uses and listen on it
    # inside the machine (perl-base is in every Debian).
    free_port = "print IO::Socket::INET->new(Listen=>1,LocalAddr=>'127.0.0.1')->sockport"
    port = machine.run(["perl", "-MIO::Socket::INET", "-e", free_port]).stdout.strip()
    assert port.isdigit()
    listener = (
        "use IO::Socket::INET; my $s = IO::Socket::INET->new(Listen => 5, "
        f"LocalAddr => '127.0.0.1', LocalPort => {port}, ReuseAddr => 1) or die; sleep 120"
    )
    host.run_expect([0], "nohup perl -e %s >/dev/null 2>&1 &", listener)
    try:
        sock = host.socket(f"tcp://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while not sock.is_listening and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sock.is_listening
        assert not host.socket("tcp://127.0.0.1:1").is_listening
    finally:
        host.run("pkill -f %s", f"[L]ocalPort => {port}")


UNIT = """\
[Unit]
Description=orbdemo: a sleeping daemon
[Service]
ExecStart=/bin/sleep 3600
[Install]
WantedBy=multi-user.target
"""


def test_service_uses_systemd(machine: Machine, host: Any) -> None:
    # systemd is PID 1 of simulated machines (as on OrbStack): testinfra picks its systemd
    # implementation, and is_running / is_enabled follow systemctl
    assert host.file("/run/systemd/system").is_directory
    machine.run(
        ["sh", "-c", "cat > /etc/systemd/system/orbdemo.service && systemctl daemon-reload"],
        user="root",
        input=UNIT,
        check=True,
    )
    service = host.service("orbdemo")
    assert type(service).__name__ == "SystemdService"
    assert not service.is_running and not service.is_enabled
    with host.sudo():
        host.run_expect([0], "systemctl enable --now orbdemo")
    try:
        assert service.is_running and service.is_enabled
        assert host.service("systemd-journald").is_running
    finally:
        with host.sudo():
            host.run_expect([0], "systemctl disable --now orbdemo")
    assert not service.is_running


def test_hosts_option_and_orb_host_in_a_pytest_run(
    machine: Machine, sim_home: Any, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged testinfra suite run with ``--hosts=orb://NAME``, and ``orb_host``."""
    monkeypatch.setenv("ORBSTACK_ORBCTL", sim_home.executable)
    for key, value in sim_home.env.items():
        monkeypatch.setenv(key, value)
    pytester.makeconftest(
        f"""
        import pytest
        from pytest_orbstack.machine import Machine
        from pytest_orbstack.orbctl import Orbctl, resolve_executable
        from pytest_orbstack.testinfra_backend import register_orb_backend
        from pytest_orbstack.fixtures_testinfra import orb_host

        def pytest_configure(config):
            register_orb_backend()  # what the plugin does in its pytest_configure

        @pytest.fixture
        def orb_vm():  # stands in for the plugin's fixture
            return Machine({machine.name!r}, Orbctl(resolve_executable()))
        """
    )
    pytester.makepyfile(
        test_unchanged_suite=textwrap.dedent(
            """
            def test_os(host):
                assert host.system_info.distribution == "debian"
                assert host.check_output("hostname") == host.backend.get_hostname()

            def test_sudo(host):
                with host.sudo():
                    assert host.check_output("id -u") == "0"
            """
        ),
        test_orb_host="""
            def test_orb_host(orb_host, orb_vm):
                assert orb_host is orb_vm.host
                assert orb_host.check_output("hostname") == orb_vm.name
        """,
    )
    spec = f"orb://{machine.name},orb://root@{machine.name}"
    result = pytester.runpytest_subprocess(f"--hosts={spec}", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([f"*test_os?orb://{machine.name}? PASSED*"])
    result.stdout.fnmatch_lines([f"*test_os?orb://root@{machine.name}? PASSED*"])
