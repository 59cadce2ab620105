"""``Machine``: a handle on one OrbStack machine, and ``RunResult``.

A ``Machine`` runs commands, copies files and reports addresses.  It does not create or delete
itself (that is :mod:`pytest_orbstack.lifecycle`).  Everything goes through the one
:class:`~pytest_orbstack.orbctl.Orbctl` client.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_orbstack.errors import CommandError, CopyError
from pytest_orbstack.orbctl import CompletedCall, MachineInfo, Orbctl
from pytest_orbstack.waits import (
    WAIT_TIMEOUT,
    wait_for_file,
    wait_for_port,
    wait_for_unit,
    wait_until_succeeds,
)

if TYPE_CHECKING:
    from pytest_orbstack.deploy.results import DeployResult
    from pytest_orbstack.deploy.targets import DeployTarget
    from pytest_orbstack.spec import MachineSpec

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HISTORY = 20


@dataclass(frozen=True)
class RunResult:
    """The outcome of a command run in a machine."""

    machine: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float = 0.0
    user: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check_returncode(self) -> RunResult:
        """Raise :class:`CommandError` if the command failed; return ``self`` otherwise."""
        if self.returncode != 0:
            raise CommandError(self)
        return self


@dataclass
class Machine:
    """One OrbStack machine.

    ``run`` takes an argv list (no shell: OrbStack quotes each element) or a string, which is
    run by ``sh -c``.  The last commands are kept in ``history`` for failure reports.
    """

    name: str
    client: Orbctl
    spec: MachineSpec | None = None
    history: deque[RunResult] = field(default_factory=lambda: deque(maxlen=HISTORY), repr=False)
    on_run: Callable[[RunResult], None] | None = field(default=None, repr=False)
    #: Told of every deploy run on this machine (the plugin attributes it to the running test).
    on_deploy: Callable[[DeployResult], None] | None = field(default=None, repr=False)
    _host: Any = field(default=None, repr=False)

    # -- commands --------------------------------------------------------------------------

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        user: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = False,
        input: str | bytes | None = None,
    ) -> RunResult:
        """Run ``cmd`` in the machine and return its result (never retried).

        ``user`` defaults to the machine's default user; ``cwd`` to its home (a directory that
        does not exist falls back to ``/``, as OrbStack does); ``env`` adds variables (passed
        with ``env NAME=VALUE``, not a shell); ``timeout`` kills a command that runs longer and
        raises :class:`~pytest_orbstack.errors.OrbctlTimeoutError`.
        """
        argv = command_argv(cmd)
        if env:
            argv = ["env", *(_env_item(k, v) for k, v in env.items()), *argv]
        data = input.encode() if isinstance(input, str) else input
        call = self.client.run(
            self.name,
            argv,
            user=user,
            workdir=cwd if cwd is not None else "",
            input=data,
            timeout=timeout,
        )
        result = self.record(argv, call, user)
        if check:
            result.check_returncode()
        return result

    def record(self, argv: list[str], call: CompletedCall, user: str | None) -> RunResult:
        """Keep a command run in this machine (by :meth:`run`, or by testinfra or pyinfra
        through the same client) in ``history`` for failure reports, and tell ``on_run``."""
        result = RunResult(
            machine=self.name,
            argv=argv,
            returncode=call.returncode,
            stdout=call.stdout.decode(errors="replace"),
            stderr=call.stderr.decode(errors="replace"),
            duration=call.duration,
            user=user,
        )
        self.history.append(result)
        if self.on_run is not None:
            self.on_run(result)
        return result

    def deployed(self, result: DeployResult) -> None:
        """A deploy ran on this machine: tell ``on_deploy``."""
        if self.on_deploy is not None:
            self.on_deploy(result)

    def push(self, src: str | os.PathLike[str], dest: str) -> None:
        """Copy a host file or directory into the machine (as its default user)."""
        self._copy(self.client.push(self.name, [os.fspath(src)], dest), "push", src, dest)

    def pull(self, src: str, dest: str | os.PathLike[str]) -> None:
        """Copy a file or directory out of the machine onto the host."""
        self._copy(self.client.pull(self.name, [src], dest), "pull", src, dest)

    def _copy(self, call: CompletedCall, verb: str, src: object, dest: object) -> None:
        if call.returncode != 0:
            err = call.stderr.decode(errors="replace").strip()
            raise CopyError(f"{verb} {src} -> {dest} in {self.name!r} failed: {err}")

    # -- facts -----------------------------------------------------------------------------

    def info(self) -> MachineInfo:
        return self.client.info(self.name)

    @property
    def ip(self) -> str | None:
        """The machine's IPv4 address; ``None`` when it is not running, or when this OrbStack
        does not report addresses (before mid-2025).

        A machine's address may lag its start by a moment: while it is running without one,
        this asks again for up to :data:`IP_WAIT` seconds (a few seconds only while this
        orbctl has never shown an address: an older OrbStack never will).
        """
        limit = IP_WAIT if self.client.reports_addresses else IP_WAIT_UNKNOWN
        deadline = time.monotonic() + limit
        while True:
            info = self.info()
            if info.ip4 or info.state != "running" or time.monotonic() >= deadline:
                return info.ip4
            time.sleep(0.2 if self.client.reports_addresses else 0.5)

    @property
    def hostname(self) -> str:
        return f"{self.name}.orb.local"

    @property
    def default_user(self) -> str | None:
        return self.info().record.default_username

    @property
    def ssh_destination(self) -> str:
        """``ssh NAME@orb`` logs into this machine through OrbStack's SSH server."""
        return f"{self.name}@orb"

    def logs(self, *, all: bool = False) -> str:
        return self.client.logs(self.name, all=all)

    # -- waits (see pytest_orbstack.waits) --------------------------------------------------

    def wait_for_unit(self, unit: str, *, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until the systemd unit is active; fail at once (with its status and journal
        tail) when it fails; :class:`~pytest_orbstack.errors.WaitTimeoutError` after
        ``timeout`` seconds."""
        wait_for_unit(self, unit, timeout=timeout)

    def wait_for_port(
        self, port: int, *, timeout: float = WAIT_TIMEOUT, from_host: bool = False
    ) -> None:
        """Wait until a TCP socket listens on ``port`` in the machine; ``from_host=True``:
        and the host can connect to it at the machine's address."""
        wait_for_port(self, port, timeout=timeout, from_host=from_host)

    def wait_until_succeeds(
        self, cmd: str | Sequence[str], *, timeout: float = WAIT_TIMEOUT, user: str | None = None
    ) -> RunResult:
        """Run ``cmd`` (argv list, or a ``sh -c`` script) until it exits 0; its result."""
        return wait_until_succeeds(self, cmd, timeout=timeout, user=user)

    def wait_for_file(self, path: str, *, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until ``path`` exists in the machine."""
        wait_for_file(self, path, timeout=timeout)

    # -- pyinfra and testinfra -------------------------------------------------------------

    def deploy(
        self,
        target: DeployTarget,
        *,
        sudo: bool = False,
        config: Mapping[str, Any] | None = None,
        **data: Any,
    ) -> DeployResult:
        """Run a pyinfra deploy (file path or callable) against this machine.

        It runs as the machine's default user, as over SSH: ``sudo=True`` (or ``_sudo=True``
        on an operation) for root.  ``config`` sets pyinfra ``Config`` attributes; keyword
        arguments become host data.  A relative path is resolved against the directory of the
        file of the test that calls (see :mod:`pytest_orbstack.deploy.targets`).
        """
        from pytest_orbstack.deploy.runner import run_deploy
        from pytest_orbstack.deploy.targets import check_target

        check_target(target, "deploy")
        return run_deploy([self], target, data=data, config=config, sudo=sudo)[self.name]

    def assert_idempotent(
        self,
        target: DeployTarget,
        *,
        sudo: bool = False,
        config: Mapping[str, Any] | None = None,
        **data: Any,
    ) -> DeployResult:
        """Run ``target`` again and fail listing every operation that still changed."""
        from pytest_orbstack.deploy.runner import assert_idempotent
        from pytest_orbstack.deploy.targets import check_target

        check_target(target, "assert_idempotent")
        return assert_idempotent(self, target, data=data, config=config, sudo=sudo)

    @property
    def host(self) -> Any:
        """A testinfra ``Host`` for this machine (needs ``pytest-orbstack[testinfra]``)."""
        if self._host is None:
            from pytest_orbstack.testinfra_backend import host_for

            self._host = host_for(self)
        return self._host


def command_argv(cmd: str | Sequence[str]) -> list[str]:
    """``cmd`` as an argv list: a string is a shell script for ``sh -c``."""
    if isinstance(cmd, str):
        if not cmd.strip():
            raise ValueError("empty command")
        return ["sh", "-c", cmd]
    argv = list(cmd)
    if not argv:
        raise ValueError("empty command")
    for arg in argv:
        if not isinstance(arg, str):
            raise TypeError(f"command arguments must be strings, got {arg!r}")
    if argv[0].startswith("-"):
        raise ValueError(
            f"a command cannot start with '-' (orbctl would take it as a flag): {argv!r}"
        )
    return argv


def _env_item(key: str, value: str) -> str:
    if not _ENV_NAME.match(key):
        raise ValueError(f"invalid environment variable name {key!r}")
    return f"{key}={value}"


#: How long :attr:`Machine.ip` waits for the address of a running machine.
IP_WAIT = 30.0
#: ... when this orbctl never showed an address (it may be an OrbStack that never does).
IP_WAIT_UNKNOWN = 3.0

__all__ = ["CommandError", "CopyError", "Machine", "RunResult", "command_argv"]
