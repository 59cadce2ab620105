"""The command surface: commands, aliases, flags, output conventions and exit codes
(contract §1 and §2).  No machine is made here except the suite's shared one."""

from __future__ import annotations

import re

import pytest

from pytest_orbstack.errors import MachineNotFoundError, PermanentError
from tests.conformance.harness import Checks, OrbctlUnderTest

#: Every command the plugin (or a user of the plugin's helpers) may call, with its aliases.
COMMANDS = {
    "create": ("add", "new"),
    "list": (),
    "info": ("i",),
    "start": (),
    "stop": ("shutdown",),
    "restart": (),
    "delete": (),
    "rename": (),
    "clone": (),
    "export": (),
    "import": (),
    "push": (),
    "pull": (),
    "default": ("set-default", "get-default"),
    "status": (),
    "version": (),
    "config": (),
    "logs": ("log", "console"),
    "ssh": (),
}
#: Flags the plugin passes, per command (short, long), as ``--help`` lists them.
FLAGS = {
    "create": [("a", "arch"), ("u", "user"), ("c", "user-data"), ("p", "set-password")],
    "list": [("f", "format"), ("q", "quiet"), ("r", "running")],
    "info": [("f", "format")],
    "start": [("a", "all")],
    "stop": [("a", "all"), ("f", "force")],
    "delete": [("a", "all"), ("f", "force")],
    "logs": [("a", "all")],
    "push": [("m", "machine")],
    "pull": [("m", "machine")],
    "import": [("n", "name")],
}


@pytest.mark.reference("§1 status")
def test_status_and_version(orbctl: OrbctlUnderTest, conf: Checks) -> None:
    call = orbctl("status")
    conf.equal("status prints Running while OrbStack runs", call.stdout, "Running\n", call=call)
    conf.equal("status exits 0 when Running", call.returncode, 0, call=call)
    call = orbctl("version")
    lines = call.stdout.splitlines()
    conf.equal("version exits 0", call.returncode, 0, section="§2 version", call=call)
    conf.match(
        "version's first line is 'Version: X (BUILD)'",
        lines[0] if lines else "",
        r"^Version: \S+ \(\d+\)$",
        section="§2 version",
        call=call,
    )
    conf.match(
        "version's second line starts with 'Commit: '",
        lines[1] if len(lines) > 1 else "",
        r"^Commit: \S+",
        section="§2 version",
        call=call,
    )
    call = orbctl("--version")
    conf.that(
        "there is no --version flag (use the version subcommand)",
        call.returncode != 0,
        expected="a non-zero exit",
        got=f"exit {call.returncode}",
        call=call,
    )


@pytest.mark.reference("§2 commands")
@pytest.mark.parametrize("command", [c for cmd, al in COMMANDS.items() for c in (cmd, *al)])
def test_command_exists(orbctl: OrbctlUnderTest, conf: Checks, command: str) -> None:
    call = orbctl(command, "--help")
    conf.equal(f"'{command} --help' exits 0", call.returncode, 0, call=call)
    conf.that(
        f"'{command} --help' prints usage on stdout",
        "Usage:" in call.stdout,
        expected="'Usage:' in stdout",
        got=call.stdout[:200],
        call=call,
    )


@pytest.mark.reference("§2 flags")
@pytest.mark.parametrize("command", sorted(FLAGS))
def test_command_flags(orbctl: OrbctlUnderTest, conf: Checks, command: str) -> None:
    call = orbctl(command, "--help")
    for short, long in FLAGS[command]:
        conf.match(
            f"{command} has -{short}/--{long}",
            call.stdout,
            rf"(?m)^\s+-{short}, --{re.escape(long)}\b",
            call=call,
        )


@pytest.mark.reference("§1 errors")
def test_client_and_server_error_format(orbctl: OrbctlUnderTest, conf: Checks) -> None:
    call = orbctl("no-such-command")
    conf.error(
        "an unknown command is a cobra error",
        call,
        '^Error: unknown command "no-such-command" for "orb(ctl)?"',
        classified=PermanentError,
    )
    call = orbctl("info")
    conf.error(
        "a wrong argument count is a cobra error",
        call,
        "Error: accepts 1 arg(s), received 0",
        classified=PermanentError,
    )
    conf.that(
        "cobra errors are followed by the usage text on stderr",
        "Usage:" in call.stderr,
        expected="'Usage:' in stderr",
        got=call.stderr[:200],
        call=call,
    )
    missing = orbctl.name("missing")
    call = orbctl("info", missing)
    conf.error(
        "server errors are '[-32098] <message>' on stderr, exit 1, nothing on stdout",
        call,
        f"[-32098] machine not found: '{missing}'",
        classified=MachineNotFoundError,
    )
    call = orbctl("restart")
    conf.error(
        "restart without names refuses",
        call,
        "Error: no machines specified",
        section="§2 restart",
        classified=PermanentError,
    )
    call = orbctl("list", "-f", "yaml")
    conf.error(
        "list rejects an unknown format",
        call,
        "Error: invalid format: yaml",
        section="§2 list",
        classified=PermanentError,
    )


@pytest.mark.reference("§1 tty")
def test_list_text_without_tty(orbctl: OrbctlUnderTest, conf: Checks, main: str) -> None:
    call = orbctl("list")
    lines = call.stdout.splitlines()
    conf.equal("list exits 0", call.returncode, 0, call=call)
    conf.that(
        "list prints no header when stdout is not a terminal",
        not any(line.split()[:2] == ["NAME", "STATE"] for line in lines if line.strip()),
        expected="no 'NAME STATE ...' line",
        got=lines[:2],
        call=call,
    )
    row = next((line.split() for line in lines if line.split()[:1] == [main]), [])
    conf.equal(
        "a list row starts NAME STATE DISTRO VERSION ARCH",
        row[1:4],
        ["running", "debian", "bookworm"],
        section="§2 list",
        call=call,
    )


@pytest.mark.reference("§2 config")
def test_config_reads(orbctl: OrbctlUnderTest, conf: Checks, main: str) -> None:
    show = orbctl("config", "show")
    lines = show.stdout.splitlines()
    conf.equal("config show exits 0", show.returncode, 0, call=show)
    conf.that(
        "config show prints sorted 'key: value' lines",
        bool(lines) and all(": " in line for line in lines) and lines == sorted(lines),
        expected="sorted 'key: value' lines",
        got=lines[:5],
        call=show,
    )
    keys = {line.split(": ", 1)[0] for line in lines}
    for key in ("memory_mib", "cpu", "rosetta", "network_proxy", "network_bridge"):
        conf.that(
            f"config show includes {key}",
            key in keys,
            expected=f"a '{key}: ' line",
            got=sorted(keys)[:8],
            call=show,
        )
    conf.that(
        "config show includes the machine's username",
        f"machine.{main}.username: confuser" in lines,
        expected=f"'machine.{main}.username: confuser'",
        got=[line for line in lines if line.startswith("machine.")][:5],
        call=show,
    )
    conf.that(
        "config show omits data_dir while it is unset (or shows it set)",
        "data_dir: " not in lines and "data_dir:" not in lines,
        expected="no empty 'data_dir:' line",
        got=[line for line in lines if line.startswith("data_dir")],
        call=show,
    )
    get = orbctl("config", "get", "memory_mib")
    conf.tolerate(
        "config get KEY prints KEY's line (the snapshot prints the whole list: inferred)",
        get.stdout.splitlines()[:3],
        {
            "the whole list, exit 0": get.returncode == 0 and get.stdout == show.stdout,
            "only memory_mib's line, exit 0": get.returncode == 0
            and get.stdout.strip().startswith("memory_mib"),
        },
        call=get,
    )
    get = orbctl("config", "get", "conf.no.such.key")
    conf.tolerate(
        "config get with an unknown key",
        (get.returncode, get.first_err),
        {
            "the whole list, exit 0 (key ignored)": get.returncode == 0
            and get.stdout == show.stdout,
            "'Unknown configuration key', exit 1": get.returncode == 1
            and "Unknown configuration key" in get.stderr,
        },
        call=get,
    )
    bad = orbctl("config", "set", "conf.no.such.key", "1")
    conf.error(
        "config set refuses an unknown key",
        bad,
        "Unknown configuration key: conf.no.such.key",
        classified=PermanentError,
    )
