"""What a failure report says about a machine: what an infrastructure engineer looks at first.

For a machine of a failing test (or one whose provisioning deploy failed during set-up): its
spec, state and address, how to log in, the last commands, the console log (tidied: no doubled
blank lines, no terminal colour codes), ``systemctl --failed``, and the journal tail of the
units the deploys touched (or, failing that, of the failed units).  Each part is bounded in
size, and collecting never raises: a machine that cannot be asked says why instead.

In-machine commands go through :meth:`Machine.run` (argv lists, as root, short timeouts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pytest_orbstack.errors import OrbstackError

if TYPE_CHECKING:
    from pytest_orbstack.deploy.results import DeployResult
    from pytest_orbstack.machine import Machine

CONSOLE_LINES = 30
CONSOLE_CHARS = 4000
FAILED_LINES = 20
JOURNAL_LINES = 40  # per report, all units together
JOURNAL_CHARS = 6000
MAX_UNITS = 5
COMMAND_TIMEOUT = 20.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
#: ``systemctl start nginx``, ``systemctl --now enable nginx.service`` ...
_SYSTEMCTL = re.compile(
    r"systemctl\s+(?:-\S+\s+)*(?:start|stop|restart|reload|try-restart|reload-or-restart|"
    r"enable|disable|reenable|mask|unmask|is-active|status)\s+((?:-\S+\s+)*[\w@.:\\-]+"
    r"(?:\s+[\w@.:\\-]+)*)"
)
_SERVICE = re.compile(r"(?:^|[\s;&|])service\s+([\w@.-]+)\s+(?:start|stop|restart|reload)")
_UNIT_FILE = re.compile(r"/(?:etc|lib|usr/lib)/systemd/system/([\w@.-]+\.(?:service|socket|timer))")
_UNIT_NAME = re.compile(r"^[\w@.:\\-]+$")


def tidy_console(text: str, *, lines: int = CONSOLE_LINES, chars: int = CONSOLE_CHARS) -> str:
    """The tail of a console log: terminal codes and carriage returns removed, runs of blank
    lines collapsed to one, and a double-spaced log (a tty's ``\\r\\r\\n`` line ends, read
    as two) single-spaced."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    rows = [row.rstrip() for row in text.split("\n")]
    followed = [bool(rows[i].strip()) and not rows[i + 1].strip() for i in range(len(rows) - 1)]
    filled = sum(1 for row in rows[:-1] if row.strip())
    if filled > 1 and sum(followed) >= 0.9 * filled:
        rows = [row for row in rows if row.strip()]  # double-spaced: every line had a blank
    out: list[str] = []
    for row in rows:
        if row.strip() or (out and out[-1].strip()):
            out.append(row)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out[-lines:])[-chars:]


def units_touched(results: Iterable[DeployResult]) -> list[str]:
    """Systemd units the deploys' commands named (``systemctl``/``service`` calls, unit files
    written), in first-seen order."""
    found: dict[str, None] = {}
    for result in results:
        for op in result.operations:
            for command in (op.name, *op.commands):
                for match in _SYSTEMCTL.finditer(command):
                    for word in match.group(1).split():
                        if not word.startswith("-") and _UNIT_NAME.match(word):
                            found.setdefault(_unit(word))
                for match in _SERVICE.finditer(command):
                    found.setdefault(_unit(match.group(1)))
                for match in _UNIT_FILE.finditer(command):
                    found.setdefault(match.group(1))
    return list(found)


def _unit(name: str) -> str:
    return name if "." in name.rsplit("@", 1)[-1] else f"{name}.service"


def failed_units(listing: str) -> list[str]:
    """Unit names from ``systemctl --failed --plain --no-legend`` output."""
    units = []
    for line in listing.splitlines():
        words = line.replace("\u25cf", " ").split()
        if words and _UNIT_NAME.match(words[0]) and "." in words[0]:
            units.append(words[0])
    return units


def _bounded(text: str, lines: int, chars: int) -> str:
    rows = text.strip().splitlines()
    cut = len(rows) > lines
    body = "\n".join(rows[-lines:])[-chars:]
    return (f"(last {lines} lines)\n" if cut else "") + body


def system_state(machine: Machine, units: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``systemctl --failed`` and the journal tail of ``units`` (the units the deploys
    touched) and of the failed units, as titled parts; what could not be had says why."""
    parts: list[tuple[str, str]] = []
    try:
        listing = machine.run(
            ["systemctl", "--failed", "--plain", "--no-legend", "--no-pager", "--full"],
            user="root",
            timeout=COMMAND_TIMEOUT,
        )
    except OrbstackError as exc:
        return [("systemctl --failed", f"(could not ask: {exc})")]
    failed = failed_units(listing.stdout) if listing.ok else []
    shown = listing.stdout.strip() or listing.stderr.strip() or "0 units failed"
    parts.append(("systemctl --failed", _bounded(shown, FAILED_LINES, 2000)))
    wanted = list(dict.fromkeys([*units, *failed]))[:MAX_UNITS]
    if not wanted:
        return parts
    argv = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(JOURNAL_LINES)]
    for unit in wanted:
        argv += ["-u", unit]
    try:
        journal = machine.run(argv, user="root", timeout=COMMAND_TIMEOUT)
        text = journal.stdout.strip() or journal.stderr.strip() or "(no entries)"
    except OrbstackError as exc:
        text = f"(could not ask: {exc})"
    parts.append((f"journal of {', '.join(wanted)}", _bounded(text, JOURNAL_LINES, JOURNAL_CHARS)))
    return parts


def machine_details(machine: Machine, units: Sequence[str] = ()) -> str:
    """The failure report's section for ``machine``."""
    facts = [f"spec: {machine.spec.describe() if machine.spec else '?'}"]
    console = ""
    running = False
    try:
        info = machine.info()
        running = info.state == "running"
        image = info.record.image
        shown = f"{image.distro}:{image.version} ({image.arch})"
        facts.append(f"state: {info.state}, ip4: {info.ip4 or '-'}, image: {shown}")
        console = tidy_console(machine.logs())
    except OrbstackError as exc:
        facts.append(f"(could not inspect it: {exc})")
    facts.append(f"log in: orb -m {machine.name}   or   ssh {machine.ssh_destination}")
    commands = [f"$ {r.argv!r} -> {r.returncode}" for r in machine.history]
    extra = system_state(machine, units) if running else []
    return failure_section(machine.name, facts, commands[-10:], console, extra)


def failure_section(
    name: str,
    facts: Iterable[str],
    commands: Iterable[str],
    log_tail: str,
    extra: Iterable[tuple[str, str]] = (),
) -> str:
    """A failing test's section about one machine: facts, the last commands, the console log's
    tail (already tidied and bounded) and ``extra`` titled
    parts (``systemctl --failed``, journal tails)."""
    lines = [f"machine {name}", *(f"  {f}" for f in facts)]
    cmds = list(commands)
    if cmds:
        lines.append("last commands:")
        lines += [f"  {c}" for c in cmds]
    if log_tail.strip():
        lines.append("console log (tail):")
        lines += [f"  {line}" for line in log_tail.strip().splitlines()]
    for title, text in extra:
        lines.append(f"{title}:")
        lines += [f"  {line}" for line in text.splitlines()]
    return "\n".join(lines)


def provision_failure(machine: Machine, results: Iterable[DeployResult]) -> str:
    """What to add to a provisioning deploy's error (during set-up, before the machine is
    removed): the machine's section, with the journal of the units that deploy touched."""
    return machine_details(machine, units_touched(results))


__all__ = [
    "failed_units",
    "failure_section",
    "machine_details",
    "provision_failure",
    "system_state",
    "tidy_console",
    "units_touched",
]
