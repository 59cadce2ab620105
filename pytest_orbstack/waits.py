"""Waits with a clear end: ``wait_for_unit``, ``wait_for_port``, ``wait_until_succeeds``,
``wait_for_file`` (the :class:`~pytest_orbstack.machine.Machine` methods call these).

Every wait has a timeout; when it runs out, :class:`~pytest_orbstack.errors.WaitTimeoutError`
shows what was waited for and the output of the last attempt.  No fixed sleeps:

* a systemd unit with a pending job is waited for by systemd itself (event-driven): a transient
  ``systemd-run --wait -p After=UNIT true`` cannot run before the unit's job has finished, so
  it returns the moment the unit is started (or failed to start);
* anything else (a unit in ``auto-restart``, a port, a file, a command) is polled, with
  exponential backoff from :data:`FIRST_DELAY` up to :data:`MAX_DELAY` seconds (tenacity), and
  the last attempt bounded by what is left of the timeout.

A unit that is ``failed``, not found, or inactive with no job that could start it ends the wait
at once with :class:`~pytest_orbstack.errors.UnitFailedError` (its ``systemctl status`` and the
tail of its journal), as the NixOS test driver's ``wait_for_unit`` does.

Commands are argv lists; the only shell script (the port check) gets the port as an argument.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import tenacity

from pytest_orbstack.errors import OrbctlTimeoutError, UnitFailedError, WaitTimeoutError

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine, RunResult

T = TypeVar("T")

#: Default timeout of every wait, in seconds.
WAIT_TIMEOUT = 60.0
#: First pause between two polls; doubled after each attempt up to :data:`MAX_DELAY`.
FIRST_DELAY = 0.05
MAX_DELAY = 1.0
#: The least time an attempt is given, even when less of the timeout is left (so the last
#: attempt shows output rather than being killed at once).
MIN_ATTEMPT = 2.0
#: Journal lines quoted when a unit failed.
JOURNAL_LINES = 30

#: ``sh -c`` script: is a TCP socket listening on port "$1" (any address, IPv4 or IPv6)?
#: Reads the kernel's socket tables, so it needs no ``ss``/``netstat`` in the image.
_LISTENING = (
    'p=$(printf %04X "$1"); '
    "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | "
    'awk -v p="$p" \'$4 == "0A" { split($2, a, ":"); if (a[2] == p) f = 1 } '
    "END { exit !f }'"
)


@dataclass
class _Attempt:
    """The last attempt of a wait, for the timeout message."""

    text: str = "(no attempt finished)"
    finished: bool = False

    def note(self, text: str) -> None:
        self.text = text
        self.finished = True

    def result(self, result: RunResult) -> None:
        self.finished = True
        out = "\n".join(
            part.strip() for part in (result.stdout, result.stderr) if part and part.strip()
        )
        lines = out.splitlines()[-20:]
        body = ("\n    " + "\n    ".join(lines)) if lines else " (no output)"
        self.text = f"{result.argv!r} exited {result.returncode}:{body}"


def _check_timeout(timeout: float, what: str) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"{what}: timeout={timeout!r} must be a positive number of seconds")
    return float(timeout)


def _poll(
    machine: Machine,
    what: str,
    timeout: float,
    attempt: Callable[[float], T | None],
    last: _Attempt,
) -> T:
    """Call ``attempt(remaining)`` until it returns a value, with backoff, for ``timeout``
    seconds; then :class:`WaitTimeoutError` with ``last``."""
    deadline = time.monotonic() + timeout

    def once() -> T | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return attempt(max(remaining, MIN_ATTEMPT))
        except OrbctlTimeoutError as exc:
            if last.finished:
                last.text += f" (and the next attempt was still running at the deadline: {exc})"
            else:
                last.text = f"still running when the timeout ran out ({exc})"
            return None

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda value: value is None),
        stop=tenacity.stop_before_delay(timeout),
        wait=tenacity.wait_exponential(multiplier=FIRST_DELAY, min=FIRST_DELAY, max=MAX_DELAY),
        sleep=lambda seconds: time.sleep(max(0.0, min(seconds, deadline - time.monotonic()))),
        retry_error_callback=lambda state: None,
    )
    value = retrying(once)
    if value is None:
        raise WaitTimeoutError(machine.name, what, timeout, last.text)
    return value


# -- the waits -------------------------------------------------------------------------------


def wait_until_succeeds(
    machine: Machine,
    cmd: str | Sequence[str],
    *,
    timeout: float = WAIT_TIMEOUT,
    user: str | None = None,
) -> RunResult:
    """Run ``cmd`` until it exits 0; return that run's result."""
    timeout = _check_timeout(timeout, "wait_until_succeeds")
    last = _Attempt()

    def attempt(remaining: float) -> RunResult | None:
        result = machine.run(cmd, user=user, timeout=remaining)
        last.result(result)
        return result if result.ok else None

    what = f"command {cmd if isinstance(cmd, str) else list(cmd)!r} to succeed"
    return _poll(machine, what, timeout, attempt, last)


def wait_for_file(machine: Machine, path: str, *, timeout: float = WAIT_TIMEOUT) -> None:
    """Wait until ``path`` exists in the machine (looked at as root)."""
    timeout = _check_timeout(timeout, "wait_for_file")
    if not isinstance(path, str) or not path:
        raise ValueError(f"wait_for_file: path must be a non-empty string, got {path!r}")
    last = _Attempt()

    def attempt(remaining: float) -> bool | None:
        result = machine.run(["test", "-e", path], user="root", timeout=remaining)
        last.result(result)
        return True if result.ok else None

    _poll(machine, f"file {path!r} to exist", timeout, attempt, last)


def wait_for_port(
    machine: Machine,
    port: int,
    *,
    timeout: float = WAIT_TIMEOUT,
    from_host: bool = False,
) -> None:
    """Wait until a TCP socket listens on ``port`` in the machine (any address).

    ``from_host=True`` also waits until the host can connect to it at the machine's IPv4
    address (a service that listens on ``127.0.0.1`` only is never reachable from the host).
    """
    timeout = _check_timeout(timeout, "wait_for_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"wait_for_port: port={port!r} must be an integer from 1 to 65535")
    last = _Attempt()

    def listening(remaining: float) -> bool | None:
        result = machine.run(
            ["sh", "-c", _LISTENING, "sh", str(port)], user="root", timeout=remaining
        )
        if result.ok:
            return True
        last.note(f"nothing listens on TCP port {port}")
        return None

    started = time.monotonic()
    _poll(machine, f"TCP port {port} to listen", timeout, listening, last)
    if not from_host:
        return

    def reachable(remaining: float) -> bool | None:
        address = machine.ip
        if not address:
            last.note("the machine has no IPv4 address")
            return None
        try:
            with socket.create_connection((address, port), timeout=min(remaining, 5.0)):
                return True
        except OSError as exc:
            last.note(f"connecting from the host to {address}:{port}: {exc}")
            return None

    left = max(timeout - (time.monotonic() - started), 0.001)
    _poll(machine, f"TCP port {port} to be reachable from the host", left, reachable, last)


@dataclass(frozen=True)
class UnitState:
    """A systemd unit's ``systemctl show`` properties."""

    load: str
    active: str
    sub: str
    result: str

    def __str__(self) -> str:
        return f"{self.active} ({self.sub}; load state {self.load}, result {self.result})"


def _unit_state(machine: Machine, unit: str, remaining: float) -> UnitState:
    argv = ["systemctl", "show", "--no-pager", "-p", "LoadState", "-p", "ActiveState"]
    argv += ["-p", "SubState", "-p", "Result", unit]
    result = machine.run(argv, user="root", timeout=remaining)
    props = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return UnitState(
        props.get("LoadState", "?"),
        props.get("ActiveState", "?"),
        props.get("SubState", "?"),
        props.get("Result", "?"),
    )


def _has_job(machine: Machine, unit: str, remaining: float) -> bool:
    argv = ["systemctl", "list-jobs", "--no-legend", "--plain", "--full", unit]
    result = machine.run(argv, user="root", timeout=remaining)
    return any(line.split()[1:2] == [unit] for line in result.stdout.splitlines())


def _wait_for_job(machine: Machine, unit: str, remaining: float) -> None:
    """Block (in systemd) until ``unit``'s pending job is done: a transient unit ordered after
    it cannot start before."""
    argv = ["timeout", str(max(int(remaining), 1)), "systemd-run", "--wait", "--quiet"]
    argv += ["--collect", "--no-ask-password", "-p", f"After={unit}", "true"]
    machine.run(argv, user="root", timeout=remaining + 5)


def unit_report(machine: Machine, unit: str) -> str:
    """``systemctl status`` and the journal tail of ``unit`` (for failure messages)."""
    status = machine.run(
        ["systemctl", "status", "--no-pager", "--full", "--lines=0", unit],
        user="root",
        timeout=30,
    )
    journal = machine.run(
        ["journalctl", "--no-pager", "--quiet", "-n", str(JOURNAL_LINES), "-u", unit],
        user="root",
        timeout=30,
    )
    parts = [status.stdout.strip() or status.stderr.strip() or "(no status)"]
    parts.append(f"journal (last {JOURNAL_LINES} lines):")
    parts.append(journal.stdout.strip() or journal.stderr.strip() or "(empty)")
    return "\n".join(parts)


def wait_for_unit(machine: Machine, unit: str, *, timeout: float = WAIT_TIMEOUT) -> None:
    """Wait until the systemd unit ``unit`` is active.

    Raises :class:`UnitFailedError` at once when the unit is ``failed``, cannot be loaded, or
    is inactive with no job pending; :class:`WaitTimeoutError` when ``timeout`` runs out.
    """
    timeout = _check_timeout(timeout, "wait_for_unit")
    if not isinstance(unit, str) or not unit or unit.startswith("-"):
        raise ValueError(f"wait_for_unit: unit={unit!r} must be a unit name")
    last = _Attempt()
    deadline = time.monotonic() + timeout

    def fail(why: str) -> UnitFailedError:
        return UnitFailedError(machine.name, unit, why, unit_report(machine, unit))

    def judge(state: UnitState, job: bool) -> bool | None:
        last.note(f"unit {unit!r} is {state}")
        if state.active == "active":
            return True
        if state.active == "failed":
            raise fail(f"entered state failed (result {state.result})")
        if state.load in ("not-found", "bad-setting", "error", "masked"):
            raise fail(f"cannot be started (load state {state.load})")
        if state.active == "inactive" and not job:
            raise fail("is inactive and no job is pending (nothing is starting it)")
        return None  # a job pending, activating in auto-restart, deactivating: again

    def attempt(remaining: float) -> bool | None:
        state = _unit_state(machine, unit, remaining)
        if state.active in ("active", "failed"):
            return judge(state, False)
        if not _has_job(machine, unit, remaining):
            return judge(state, False)
        _wait_for_job(machine, unit, deadline - time.monotonic())
        state = _unit_state(machine, unit, max(deadline - time.monotonic(), 1.0))
        return judge(state, True)

    _poll(machine, f"unit {unit!r} to be active", timeout, attempt, last)


__all__ = [
    "WAIT_TIMEOUT",
    "UnitState",
    "unit_report",
    "wait_for_file",
    "wait_for_port",
    "wait_for_unit",
    "wait_until_succeeds",
]
