"""testinfra support: ``host_for(machine)``, the ``orb://`` host spec and its registration.

pytest-testinfra is an optional extra (``pytest-orbstack[testinfra]``).  This module never
imports testinfra at import time, so the plugin can load it whether or not testinfra is
installed; the backend itself, :class:`pytest_orbstack.testinfra_orb.OrbBackend`, is found by its
class path in testinfra's ``BACKENDS`` table, as testinfra's own backends are, and imported only
when an ``orb://`` host is used.  Using the feature without testinfra raises
:class:`MissingTestinfraError`, which names the extra to install.

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
import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_orbstack.errors import (
    ConfigError,
    MissingTestinfraError,
)
from pytest_orbstack.orbctl import ENV_BACKEND, ENV_ORBCTL, Orbctl, select_executable

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine

log = logging.getLogger("pytest_orbstack")

#: The URL scheme and testinfra connection name: ``--hosts=orb://NAME``, ``connection="orb"``.
BACKEND_NAME = "orb"
#: What :func:`register_orb_backend` stores in ``testinfra.backend.BACKENDS``: the backend
#: lives in its own module, which imports testinfra and is imported only when used.
BACKEND_CLASSPATH = "pytest_orbstack.testinfra_orb.OrbBackend"
#: The optional dependency that provides testinfra.
EXTRA = "pytest-orbstack[testinfra]"
_client_factory: Callable[[], Orbctl] | None = None


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
    the plugin's own choice without options: ``$ORBSTACK_ORBCTL``, ``ORBSTACK_BACKEND=sim`` (the
    bundled simulator), else ``orbctl`` on ``PATH``.
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
    backend = os.environ.get(ENV_BACKEND, "").strip() or "auto"
    executable = select_executable(backend, os.environ.get(ENV_ORBCTL) or None)
    if executable is None:
        raise ConfigError(
            "orb:// testinfra hosts need orbctl: none was found on PATH and $ORBSTACK_ORBCTL is "
            "not set (install OrbStack, or on Linux use the bundled simulator with "
            "ORBSTACK_BACKEND=sim)"
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
    """The ``OrbBackend`` class, imported by its class path as testinfra does (this imports
    testinfra; without it, :class:`MissingTestinfraError`)."""
    module, _, name = BACKEND_CLASSPATH.rpartition(".")
    cls: type[Any] = getattr(_import_testinfra(module, "the orb testinfra backend"), name)
    return cls


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
