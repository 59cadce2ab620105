"""Exception types raised by pytest-orbstack, and the classifier for ``orbctl`` errors.

Every failure of an ``orbctl`` call becomes an :class:`OrbctlError` subclass carrying the argv,
exit code and stderr of the call.  The class says what a caller may do about it:

* :class:`PermanentError` - retrying cannot help (machine not found, invalid name, ...);
* :class:`TransientError` - retry with backoff (network, missing IP address, busy, ...);
* :class:`StateError` - the machine is in a transitional state: poll its state, then decide;
* :class:`OrbStackUnavailableError` - ``orbctl`` missing, OrbStack not running or not startable;
* :class:`OrbctlTimeoutError` - our own per-call timeout fired and the process was killed.

Classification matches specific texts from the error catalogue (docs/orbctl-contract.md §9),
never broad words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_orbstack.deploy.results import DeployResult, OperationResult
    from pytest_orbstack.machine import RunResult


class OrbstackError(Exception):
    """Base class of every error pytest-orbstack raises on purpose."""


class ConfigError(OrbstackError):
    """A user-supplied value (marker argument, option, ini key) is invalid."""


class WaitTimeoutError(OrbstackError, TimeoutError):
    """A wait (``Machine.wait_for_unit``, ``wait_for_port``, ...) ran out of time.

    ``last`` is what the last attempt showed (its command, exit code and output).
    """

    def __init__(self, machine: str, what: str, timeout: float, last: str) -> None:
        self.machine = machine
        self.what = what
        self.timeout = timeout
        self.last = last
        super().__init__(
            f"machine {machine!r}: timed out after {timeout:g}s waiting for {what}; "
            f"last attempt: {last}"
        )


class UnitFailedError(OrbstackError):
    """``wait_for_unit``: the unit failed (or nothing will start it); ``report`` is its
    ``systemctl status`` and journal tail."""

    def __init__(self, machine: str, unit: str, why: str, report: str) -> None:
        self.machine = machine
        self.unit = unit
        self.why = why
        self.report = report
        body = "\n    ".join(report.splitlines())
        super().__init__(f"machine {machine!r}: unit {unit!r} {why}\n    {body}")


class ProvisionError(OrbstackError):
    """A machine could not be made ready (its cause is chained and quoted)."""


class CommandError(OrbstackError):
    """A command run in a machine exited with a non-zero status (``check=True``)."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        detail = ("\n    " + "\n    ".join(tail)) if tail else ""
        super().__init__(
            f"command {result.argv!r} in machine {result.machine!r} exited "
            f"{result.returncode}{detail}"
        )


class CopyError(OrbstackError):
    """``push`` or ``pull`` failed (``cp``'s own error text is kept)."""


class DeployError(OrbstackError):
    """A deploy failed on at least one machine.

    ``results`` maps every machine name to its :class:`DeployResult` (the failing ones and the
    others); ``result`` is the first failing one.  The message names, per machine, the error or
    failed operations with their output, and the operations that did not run.
    """

    def __init__(self, results: Mapping[str, DeployResult], target: str = "") -> None:
        self.results = dict(results)
        self.target = target
        failing = [r for r in self.results.values() if not r.ok]
        self.result = failing[0] if failing else next(iter(self.results.values()))
        parts = []
        for res in failing:
            lines = [f"  on {res.machine}:"]
            if res.error:
                lines.append("    " + res.error.replace("\n", "\n    "))
            for op in res.failed_operations:
                lines.append(f"    operation failed: {op.describe()}")
            not_run = [op.name for op in res.skipped_operations]
            if not_run:
                lines.append(f"    did not run: {', '.join(not_run)}")
            parts.append("\n".join(lines))
        names = ", ".join(op.name for r in failing for op in r.failed_operations)
        head = f"deploy {target} failed" if target else "deploy failed"
        if names:
            head += f" (failed operations: {names})"
        super().__init__(head + "\n" + "\n".join(parts))

    @property
    def failed_operations(self) -> list[OperationResult]:
        return [op for r in self.results.values() for op in r.failed_operations]


class IdempotenceError(AssertionError):
    """A deploy run again still changed something (an ``AssertionError``: a test failure)."""

    def __init__(self, results: Mapping[str, DeployResult], target: str = "") -> None:
        self.results = dict(results)
        self.target = target
        changed = [r for r in self.results.values() if r.changed]
        self.result = changed[0] if changed else next(iter(self.results.values()))
        lines = [
            f"deploy {target} is not idempotent: the second run still changed"
            if target
            else "deploy is not idempotent: the second run still changed"
        ]
        for res in changed:
            for op in res.changed_operations:
                lines.append(f"  {res.machine}: {op.name}")
                lines.extend(f"      $ {cmd}" for cmd in op.commands[:5])
        super().__init__("\n".join(lines))

    @property
    def changed_operations(self) -> list[OperationResult]:
        return [op for r in self.results.values() for op in r.changed_operations]


class DeployProcessError(OrbstackError):
    """The deploy process died without reporting results (a crash, not a failed deploy)."""


class MissingTestinfraError(OrbstackError, ImportError):
    """testinfra support was used but pytest-testinfra is not installed (or not importable)."""


class ReportError(OrbstackError):
    """A report file that cannot be read, or is of a format without events."""


class OrbctlError(OrbstackError):
    """An ``orbctl`` invocation failed.

    ``argv`` is the exact argument list that was run, ``returncode`` its exit code (``None`` when
    it never finished) and ``stderr`` its standard error, kept verbatim.
    """

    kind = "error"

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stderr: str,
        stdout: str = "",
        message: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        detail = message or first_error_line(stderr) or f"exit code {returncode}"
        super().__init__(f"{_command_name(argv)}: {detail}")

    @property
    def message(self) -> str:
        """The error text without the ``[-32098]`` or ``Error:`` prefix."""
        return strip_prefix(first_error_line(self.stderr))


class PermanentError(OrbctlError):
    """Retrying the same call cannot succeed."""

    kind = "permanent"


class UnsupportedCommandError(PermanentError):
    """``unknown command "clone" for "orbctl"``: this OrbStack is too old for the command."""

    kind = "unsupported"


class MachineNotFoundError(PermanentError):
    """``machine not found: 'NAME'``."""


class MachineExistsError(PermanentError):
    """``machine already exists`` (create, clone, import) or ``machine '"N"' already exists``."""


class UnsupportedSettingError(PermanentError):
    """A per-machine setting this OrbStack does not know: ``create`` rejects ``--cpus``,
    ``--memory``, ``--disk`` or ``--isolated`` (``unknown flag``), or ``config set`` rejects a
    ``machine.NAME.*`` key.  They arrived with OrbStack 2.1-2.2 (docs/orbctl-contract.md §16)."""

    kind = "unsupported"

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stderr: str,
        stdout: str = "",
        message: str | None = None,
    ) -> None:
        said = strip_prefix(first_error_line(stderr)) or f"exit code {returncode}"
        super().__init__(
            argv,
            returncode,
            stderr,
            stdout,
            message=message
            or (
                f"this OrbStack does not support per-machine settings ({said}); they need "
                f"OrbStack 2.2 or later: update OrbStack, or drop cpus=/memory=/disk=/"
                f"isolated_from_mac= from the marker or factory call"
            ),
        )


class TransientError(OrbctlError):
    """A failure that may go away: network, missing IP address, concurrent operation ..."""

    kind = "transient"


class DeadlineExceeded(TransientError):
    """A wait for a machine's state ran past the policy's deadline."""


class StateError(OrbctlError):
    """The machine is mid-transition (``cannot transition from creating to ...``): poll state."""

    kind = "state"


class OrbStackUnavailableError(OrbctlError):
    """``orbctl`` is not installed, or OrbStack is not running and could not be started."""

    kind = "unavailable"


class OrbStackWedgedError(PermanentError):
    """OrbStack stopped giving machines addresses: machines of different names kept failing
    with ``setup: machine didn't start in 30s (missing IP address)`` and nothing succeeded in
    between (orbstack/orbstack#2688, docs/orbctl-contract.md §16).  Retrying cannot help; every
    machine still to come in the run fails at once with this error."""

    kind = "wedged"


#: What a wedged OrbStack looks like and what to do (docs/orbctl-contract.md §16, #2688).
WEDGED_ADVICE = (
    "OrbStack stopped giving machines addresses: {count} machine attempts ({names}) failed "
    "with 'missing IP address' and none succeeded in between. This is OrbStack's churn wedge "
    "(https://github.com/orbstack/orbstack/issues/2688): after many create/clone + delete "
    "cycles every new machine fails this way until OrbStack is restarted for real - "
    "'orbctl stop && orbctl start' does not clear it. Quit OrbStack from its menu bar icon "
    "and open it again (reboot the Mac if that is not enough), and delete machines leaked by "
    "earlier runs with 'orbctl delete NAME'. No more machines are tried in this run."
)


class OrbctlTimeoutError(OrbctlError):
    """Our timeout fired: the ``orbctl`` process (and its process group) was killed.

    The server side may still be working (a ``create`` goes on after its client is killed).
    """

    kind = "timeout"

    def __init__(self, argv: Sequence[str], timeout: float, stderr: str = "") -> None:
        self.timeout = timeout
        super().__init__(argv, None, stderr, message=f"timed out after {timeout:g}s (killed)")


class OrbctlAbortedError(OrbctlError):
    """The client was aborted (Ctrl-C): the call was killed, or refused before it started."""

    kind = "aborted"


# Ordered (pattern, class) table, from docs/orbctl-contract.md §9.  The first match wins, so
# specific texts come before the more general ones.  Every pattern is a specific phrase.
_RULES: tuple[tuple[re.Pattern[str], type[OrbctlError]], ...] = tuple(
    (re.compile(pattern), cls)
    for pattern, cls in (
        # OrbStack itself missing, stopped or failing to start.
        (r"start VM: timed out waiting for VM to start", TransientError),
        (r"timed out waiting for services to start", TransientError),
        (r"VM exited unexpectedly", TransientError),
        (r"(?:machine )?manager is stopping", TransientError),
        # The simulator (orbsim) when this host cannot run machines (not Linux, not root...).
        (r"orbsim cannot run machines on this host", OrbStackUnavailableError),
        # A missing image file is permanent until OrbStack is updated; it comes as a download
        # error, so it must be matched before the transient download rules below.
        (r"GET download status: 404", PermanentError),
        # State-dependent.
        (r"cannot transition from \w+ to \w+", StateError),
        # Transient: operations in progress, network and download failures, start problems.
        (r"operations are in progress", TransientError),
        (r"make rootfs: fetch index", TransientError),
        (r"make rootfs: download (?:metadata|rootfs)", TransientError),
        (r"GET (?:index|download) status: 5\d\d", TransientError),
        (r"sha256 mismatch for URL", TransientError),
        (r"dial tcp: .*(?:i/o timeout|connection refused|no such host)", TransientError),
        (r"TLS handshake timeout", TransientError),
        (r"machine didn't start in \d+s", TransientError),  # see MISSING_IP below
        (r"missing IP address", TransientError),
        (r"setup: machine crashed on startup", TransientError),
        (r"canceled by machine shutdown", TransientError),
        (r"machine did not start: ", TransientError),
        (r"stop '[^']*': timeout", TransientError),
        # Permanent.
        # Per-machine settings on an OrbStack older than 2.2 (docs/orbctl-contract.md §16).
        (r"unknown flag: --(?:cpus|memory|disk|isolated)\b", UnsupportedSettingError),
        (r"Unknown machine config key: (?:cpu|memory_mib|disk_bytes)\b", UnsupportedSettingError),
        (r"machine not found", MachineNotFoundError),
        (r"machine already exists", MachineExistsError),
        (r"machine '.*' already exists", MachineExistsError),
        (r"no machines found", PermanentError),
        (r"invalid machine name", PermanentError),
        (r"invalid distro", PermanentError),
        (r"invalid architecture", PermanentError),
        (r"make rootfs: image not found", PermanentError),
        (r"cloud-init not supported", PermanentError),
        (r"cannot (?:delete|clone|rename) builtin machine", PermanentError),
        (r"can't find '_orbstack/config\.v1\.json'", PermanentError),
        (r"Unknown (?:machine )?configuration key", PermanentError),
        (r"Unknown machine config key", PermanentError),
        (r'unknown command "\w+" for', UnsupportedCommandError),
        (r"unknown (?:flag|command|shorthand flag)", PermanentError),
        (r"accepts \d+ arg\(s\)|requires at least \d+ arg", PermanentError),
        (r"no machines specified", PermanentError),
        (r"invalid format", PermanentError),
        (r"missing value for flag", PermanentError),
    )
)

#: The churn-wedge text (docs/orbctl-contract.md §16, orbstack#2688): transient for one machine,
#: a wedged OrbStack when machines of different names keep failing with it (policy.wedged).
MISSING_IP = re.compile(r"machine didn't start in \d+s \(missing IP address\)|missing IP address")


def is_missing_ip(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``orbctl`` failure with the missing-IP text."""
    return isinstance(exc, OrbctlError) and bool(MISSING_IP.search(exc.stderr or str(exc)))


_PREFIX = re.compile(r"^(?:\[-?\d+\]\s*|Error:\s*)")


def first_error_line(stderr: str) -> str:
    """The first meaningful line of ``stderr`` (skipping blank lines and cobra usage text)."""
    for line in stderr.splitlines():
        text = line.strip()
        if text and not text.startswith(("Usage:", "Flags:", "Global Flags:")):
            return text
    return ""


def strip_prefix(line: str) -> str:
    """Remove a leading ``[-32098] `` or ``Error: `` from an error line."""
    return _PREFIX.sub("", line, count=1)


def classify(stderr: str, returncode: int | None = None) -> type[OrbctlError]:
    """Map an ``orbctl`` stderr text to the error class describing what can be done about it.

    Unknown errors are :class:`OrbctlError` itself: not retried (we do not guess), but not
    claimed permanent either.
    """
    for pattern, cls in _RULES:
        if pattern.search(stderr):
            return cls
    if returncode == 2 and "goroutine" in stderr and "panic" in stderr:
        # scli.Client() panics when it cannot start the VM (docs/orbctl-contract.md §1).
        return OrbStackUnavailableError
    return OrbctlError


def _command_name(argv: Sequence[str]) -> str:
    if len(argv) >= 2:
        return f"orbctl {argv[1]}"
    return "orbctl"
