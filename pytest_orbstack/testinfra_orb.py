"""The ``orb`` testinfra backend: run testinfra's commands in an OrbStack machine.

This module imports testinfra at the top, like testinfra's own backends, and is found the way
testinfra finds them: by class path (``pytest_orbstack.testinfra_orb.OrbBackend``) in
``testinfra.backend.BACKENDS``, imported only when an ``orb://`` host is used.
:mod:`pytest_orbstack.testinfra_backend` registers it and never imports it, so the plugin works
without pytest-testinfra installed.

testinfra hands the backend a command *string* (its arguments already quoted with
``shlex.quote``, wrapped in ``sudo [-u USER] /bin/sh -c ...`` when sudo is on); the backend runs
it as the argv ``["/bin/sh", "-c", command]`` with ``orbctl run -m NAME [-u USER] -w ""``.
OrbStack quotes each argv element for the login shell, so the command string reaches
``/bin/sh`` byte for byte - the same contract as testinfra's ``docker exec NAME /bin/sh -c CMD``.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from testinfra.backend.base import BaseBackend

from pytest_orbstack.errors import ConfigError, MachineNotFoundError
from pytest_orbstack.orbctl import CompletedCall, Orbctl
from pytest_orbstack.testinfra_backend import BACKEND_NAME, default_client

#: The shell that runs testinfra's command strings (the same one testinfra's sudo wrapper uses).
SHELL = "/bin/sh"


class CommandLog(Protocol):
    """What the backend needs of a :class:`~pytest_orbstack.machine.Machine`: a place to keep
    the commands it ran, for failure reports."""

    def record(self, argv: list[str], call: CompletedCall, user: str | None) -> Any: ...


class OrbBackend(BaseBackend):  # type: ignore[misc]
    """Run testinfra commands in an OrbStack machine with ``orbctl run``."""

    NAME = BACKEND_NAME

    def __init__(
        self,
        hostspec: str,
        *args: Any,
        orbctl: Orbctl | None = None,
        machine: CommandLog | None = None,
        timeout: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        name, user = self.parse_containerspec(hostspec or "")
        if not name or name.startswith("-"):
            raise ConfigError(
                f"orb testinfra host {hostspec!r}: expected orb://[user@]NAME "
                "with the name of an OrbStack machine"
            )
        self.name: str = name
        self.user: str | None = user or None
        self.timeout: float | None = float(timeout) if timeout not in (None, "") else None
        self._orbctl = orbctl
        self._machine = machine
        # A Machine handle is known to exist; a host spec is checked on its first failure.
        self._verified = machine is not None
        # testinfra passes every option it has (connection, ssh_config, ...): the base class
        # takes sudo/sudo_user and ignores the rest, as for its own backends.
        super().__init__(name, *args, **kwargs)

    @classmethod
    def get_hosts(cls, host: str | None, **kwargs: Any) -> list[str]:
        if not host:
            raise ConfigError(
                "the orb testinfra backend needs a machine: --hosts=orb://[user@]NAME"
            )
        return [host]

    def get_pytest_id(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{BACKEND_NAME}://{user}{self.name}"

    @property
    def orbctl(self) -> Orbctl:
        if self._orbctl is None:
            self._orbctl = default_client()
        return self._orbctl

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        cmd: str = self.get_command(command, *args)
        argv = [SHELL, "-c", cmd]
        call = self.orbctl.run(self.name, argv, user=self.user, workdir="", timeout=self.timeout)
        if call.returncode != 0 and not self._verified:
            self._verify(call)
        if self._machine is not None:
            self._machine.record(argv, call, self.user)
        # The command as sent: subprocess encodes argv with the host's filesystem encoding,
        # whatever the machine's locale (testinfra's ``encode`` would use the machine's).
        return self.result(call.returncode, os.fsencode(cmd), call.stdout, call.stderr)

    def _verify(self, call: CompletedCall) -> None:
        # Without a PTY, orbctl reports "no such machine" as exit 1 with no output, just like a
        # command that failed: ask once, so a wrong --hosts says so instead of "rc=1".
        if call.returncode == 1 and not call.stdout and not call.stderr.strip():
            try:
                self.orbctl.info(self.name)
            except MachineNotFoundError as exc:
                raise MachineNotFoundError(
                    exc.argv,
                    exc.returncode,
                    exc.stderr,
                    exc.stdout,
                    message=f"testinfra host {self.get_pytest_id()}: no such machine",
                ) from exc
        self._verified = True


__all__ = ["SHELL", "CommandLog", "OrbBackend"]
