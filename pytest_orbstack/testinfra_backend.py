"""testinfra support: the ``orb`` backend, ``host_for(machine)`` and the ``orb://`` host spec.

pytest-testinfra is an optional extra (``pytest-orbstack[testinfra]``).  Importing this module
never imports testinfra: the backend class is built the first time it is needed (by
:func:`register_orb_backend`, :func:`host_for`, or an attribute lookup of ``OrbBackend``), so the
plugin can import this module whether or not testinfra is installed.  Using the feature without
testinfra raises :class:`MissingTestinfraError`, which names the extra to install.

Commands go through the project's one ``orbctl`` client, :class:`~pytest_orbstack.orbctl.Orbctl`:
testinfra hands the backend a command *string* (its arguments already quoted with
``shlex.quote``, and wrapped in ``sudo [-u USER] /bin/sh -c ...`` by ``get_command`` when sudo is
on); the backend runs it as the argv ``["/bin/sh", "-c", command]`` with
``orbctl run -m NAME [-u USER] -w ""``.  OrbStack quotes each argv element for the login shell,
so the command string reaches ``/bin/sh`` byte for byte and only that shell interprets it - the
same contract as testinfra's ``docker exec NAME /bin/sh -c CMD``.

Host specifications: ``orb://NAME``, ``orb://USER@NAME`` (``USER`` becomes ``orbctl run -u``),
plus testinfra's usual query parameters ``?sudo=true&sudo_user=USER`` and ``?timeout=SECONDS``
(a per-command limit).  testinfra has no entry point for backends: the ``orb`` scheme exists once
:func:`register_orb_backend` has added it to ``testinfra.backend.BACKENDS`` (the pytest plugin
does this in ``pytest_configure``; scripts outside pytest call it themselves).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_orbstack.errors import ConfigError, MachineNotFoundError, OrbstackError
from pytest_orbstack.orbctl import CompletedCall, Orbctl, resolve_executable

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine

log = logging.getLogger("pytest_orbstack")

#: The URL scheme and testinfra connection name: ``--hosts=orb://NAME``, ``connection="orb"``.
BACKEND_NAME = "orb"
#: What :func:`register_orb_backend` stores in ``testinfra.backend.BACKENDS``.
BACKEND_CLASSPATH = f"{__name__}.OrbBackend"
#: The optional dependency that provides testinfra.
EXTRA = "pytest-orbstack[testinfra]"
#: The shell that runs testinfra's command strings (the same one testinfra's sudo wrapper uses).
SHELL = "/bin/sh"

_lock = threading.Lock()
_backend_class: type[Any] | None = None
_client_factory: Callable[[], Orbctl] | None = None


class MissingTestinfraError(OrbstackError, ImportError):
    """testinfra support was used but pytest-testinfra is not installed (or not importable)."""


def testinfra_available() -> bool:
    """Whether pytest-testinfra can be imported, without importing it."""
    try:
        return importlib.util.find_spec("testinfra") is not None
    except (ImportError, ValueError):
        return False


def _import_testinfra(module: str, feature: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0] == "testinfra"
        if missing:
            why = "pytest-testinfra is not installed"
        else:
            why = f"pytest-testinfra is installed but cannot be imported ({exc})"
        raise MissingTestinfraError(
            f"{feature} needs pytest-testinfra, but {why}. Install the extra: pip install '{EXTRA}'"
        ) from exc


def register_orb_backend(client_factory: Callable[[], Orbctl] | None = None) -> bool:
    """Make testinfra know the ``orb`` connection (``orb://[user@]NAME``), if testinfra exists.

    Returns ``False``, importing nothing, when pytest-testinfra is not installed.  Otherwise adds
    ``"orb"`` to ``testinfra.backend.BACKENDS`` (testinfra's own scheme table, which
    ``get_backend_class`` reads; no testinfra code is patched) and returns ``True``.  Idempotent.

    ``client_factory``, if given, builds the :class:`Orbctl` that ``orb://`` hosts use (the plugin
    passes one honouring ``--orbstack-orbctl`` / the simulator); without it they use
    ``resolve_executable()`` - ``$ORBSTACK_ORBCTL``, else ``orbctl`` on ``PATH``.
    """
    global _client_factory
    if not testinfra_available():
        return False
    try:
        backend_module = importlib.import_module("testinfra.backend")
        backend_class()
    except ImportError as exc:
        log.warning("pytest-testinfra is installed but cannot be imported: %s", exc)
        return False
    backends: dict[str, str] = backend_module.BACKENDS
    current = backends.get(BACKEND_NAME)
    if current is not None and current != BACKEND_CLASSPATH:
        log.warning(
            "testinfra connection %r is already taken by %s; orb:// hosts not registered",
            BACKEND_NAME,
            current,
        )
        return False
    backends[BACKEND_NAME] = BACKEND_CLASSPATH
    if client_factory is not None:
        _client_factory = client_factory
    return True


def forget_client_factory() -> None:
    """Undo :func:`register_orb_backend`'s ``client_factory`` (the plugin's unconfigure)."""
    global _client_factory
    _client_factory = None


def default_client() -> Orbctl:
    """The client ``orb://`` hosts use when none was given (see :func:`register_orb_backend`)."""
    if _client_factory is not None:
        return _client_factory()
    executable = resolve_executable()
    if executable is None:
        raise ConfigError(
            "orb:// testinfra hosts need orbctl: none was found on PATH and $ORBSTACK_ORBCTL is "
            "not set (install OrbStack, or point ORBSTACK_ORBCTL at an orbctl such as orbsim)"
        )
    return Orbctl(executable)


def host_for(
    machine: Machine,
    *,
    user: str | None = None,
    sudo: bool = False,
    sudo_user: str | None = None,
) -> Any:
    """A new ``testinfra.host.Host`` for ``machine``, running commands through its client.

    ``Machine.host`` calls this once per machine and caches the result.  ``user`` is the
    ``orbctl run -u`` user (default: the machine's default user); ``sudo``/``sudo_user`` are
    testinfra's (commands wrapped in ``sudo [-u USER] /bin/sh -c``).  Commands run through it
    are recorded in ``machine.history`` like ``Machine.run``'s.
    """
    host_module = _import_testinfra("testinfra.host", "Machine.host")
    register_orb_backend()
    spec = f"{user}@{machine.name}" if user else machine.name
    backend = backend_class()(
        spec, orbctl=machine.client, machine=machine, sudo=sudo, sudo_user=sudo_user
    )
    host = host_module.Host(backend)
    backend.set_host(host)
    return host


def backend_class() -> type[Any]:
    """The ``OrbBackend`` class (a ``testinfra.backend.base.BaseBackend``); imports testinfra."""
    global _backend_class
    with _lock:
        if _backend_class is None:
            base = _import_testinfra("testinfra.backend.base", "the orb testinfra backend")
            _backend_class = _define_backend(base.BaseBackend)
        return _backend_class


def __getattr__(name: str) -> Any:
    # ``testinfra.backend.get_backend_class`` resolves BACKEND_CLASSPATH with getattr().
    if name == "OrbBackend":
        return backend_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_backend(base: Any) -> type[Any]:
    class OrbBackend(base):  # type: ignore[misc]
        """Run testinfra commands in an OrbStack machine with ``orbctl run``."""

        NAME = BACKEND_NAME

        def __init__(
            self,
            hostspec: str,
            *args: Any,
            orbctl: Orbctl | None = None,
            machine: Machine | None = None,
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
            # testinfra passes every option it has (connection, ssh_config, ...): the base
            # class takes sudo/sudo_user and ignores the rest, as for its own backends.
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
            call = self.orbctl.run(
                self.name, argv, user=self.user, workdir="", timeout=self.timeout
            )
            if call.returncode != 0 and not self._verified:
                self._verify(call)
            self._record(argv, call)
            return self.result(call.returncode, self.encode(cmd), call.stdout, call.stderr)

        def _verify(self, call: CompletedCall) -> None:
            # Without a PTY, orbctl reports "no such machine" as exit 1 with no output, just like
            # a command that failed: ask once, so a wrong --hosts says so instead of "rc=1".
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

        def _record(self, argv: list[str], call: CompletedCall) -> None:
            machine = self._machine
            if machine is None:
                return
            from pytest_orbstack.machine import RunResult

            result = RunResult(
                machine=self.name,
                argv=argv,
                returncode=call.returncode,
                stdout=call.stdout.decode(errors="replace"),
                stderr=call.stderr.decode(errors="replace"),
                duration=call.duration,
                user=self.user,
            )
            machine.history.append(result)
            if machine.on_run is not None:
                machine.on_run(result)

    OrbBackend.__module__ = __name__
    OrbBackend.__qualname__ = "OrbBackend"
    return OrbBackend


__all__ = [
    "BACKEND_CLASSPATH",
    "BACKEND_NAME",
    "EXTRA",
    "MissingTestinfraError",
    "backend_class",
    "default_client",
    "host_for",
    "forget_client_factory",
    "register_orb_backend",
    "testinfra_available",
]
