"""Drive pyinfra: the only module that uses pyinfra's API.

:func:`execute` builds a fresh pyinfra ``Inventory``/``State``/``Config`` of ``@orb/NAME`` hosts
(see :mod:`pytest_orbstack.connector`), connects, loads the deploy on every host, runs the
operations and returns per-host, per-operation results as JSON-ready dicts.  It runs in two
places:

* **a deploy process** (:func:`main`, started by :mod:`pytest_orbstack.deploy.runner` as
  ``python -m pytest_orbstack.deploy``) for deploy files - the way the ``pyinfra`` CLI runs
  them: ``pyinfra_cli`` is imported first (it monkey-patches the interpreter with gevent, in
  that process only), pyinfra is in CLI mode (operation identity from the deploy file's lines,
  ``local.include`` works), the file is executed by pyinfra_cli's own ``exec_file`` with the
  deploy's directory as working directory.  Nothing is shared with the test process, so deploys
  on different machines run side by side;
* **the test process**, for callables (a function cannot be handed to another process): pyinfra
  in API mode, its global context and caches saved and restored around the call, calls
  serialised by a lock that only callables take.

**Truthful results.**  Every exception while the operations run is the failure of the operation
that raised on that host (its error text, the operations after it reported as not run), never
swallowed with pyinfra's "No hosts remaining!".  Exceptions in the deploy code fail that host.
Anything else (a bug here, Ctrl-C) propagates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyinfra
from pyinfra import context as _context
from pyinfra.api import util as pyinfra_util
from pyinfra.api.config import Config
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.connectors import get_all_connectors
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory
from pyinfra.api.operations import run_host_op
from pyinfra.api.state import BaseStateCallback, State, StateStage

log = logging.getLogger("pytest_orbstack")

#: pyinfra's global context (untyped: ``ContextManager`` objects with ``get``/``set``/``use``).
context: Any = _context

#: Callables run in the test process share pyinfra's global state: one at a time.
_IN_PROCESS_LOCK = threading.RLock()


@dataclass
class HostSpec:
    """One ``@orb/NAME`` host: the machine's name and its host data (connector data included)."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)


def known_config_keys() -> frozenset[str]:
    """The attributes of pyinfra's ``Config`` (what ``config=`` may set)."""
    return frozenset(k for k in vars(Config()) if k.isupper())  # type: ignore[no-untyped-call]


# -- pyinfra plumbing ------------------------------------------------------------------------


class _LogCollector(logging.Handler):
    """Collect pyinfra's warning/error lines per (host, operation hash)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_op: dict[tuple[str, str | None], list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        host = context.ctx_host.get()
        if host is None:
            return
        try:
            message = record.getMessage()
        except Exception:  # a broken log call must not break the deploy
            return
        prefix = f"[{host.name}]"
        if message.startswith(prefix):
            message = message[len(prefix) :].strip()
        op_hash = getattr(host, "nested_executing_op_hash", None) or getattr(
            host, "executing_op_hash", None
        )
        self.by_op.setdefault((host.name, op_hash), []).append(message)


@contextlib.contextmanager
def _collect_logs() -> Iterator[_LogCollector]:
    pyinfra_logger = logging.getLogger("pyinfra")
    collector = _LogCollector()
    old_level = pyinfra_logger.level
    if not pyinfra_logger.isEnabledFor(logging.WARNING):
        pyinfra_logger.setLevel(logging.WARNING)
    pyinfra_logger.addHandler(collector)
    try:
        yield collector
    finally:
        pyinfra_logger.removeHandler(collector)
        pyinfra_logger.setLevel(old_level)


@contextlib.contextmanager
def _pyinfra_context(state: Any, inventory: Any, config: Any) -> Iterator[None]:
    """Point pyinfra's global context at our objects; restore whatever was there."""
    managers = (context.ctx_state, context.ctx_inventory, context.ctx_config, context.ctx_host)
    saved = [manager.get() for manager in managers]
    context.ctx_state.set(state)
    context.ctx_inventory.set(inventory)
    context.ctx_config.set(config)
    try:
        yield
    finally:
        for manager, old in zip(managers, saved, strict=True):
            manager.set(old)


@contextlib.contextmanager
def _on_sys_path(directory: str) -> Iterator[None]:
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(directory)


def _reset_pyinfra_caches() -> None:
    """pyinfra caches templates and file checksums by file name for the whole process: a file
    edited between two deploys in one process would otherwise be seen unchanged."""
    pyinfra_util.TEMPLATES.clear()
    pyinfra_util.FILE_SHAS.clear()


def _ensure_connector_registered() -> None:
    if "orb" not in get_all_connectors():  # type: ignore[no-untyped-call]
        raise PyinfraError(
            "the @orb pyinfra connector is not registered (entry point group "
            "'pyinfra.connectors', name 'orb'): reinstall pytest-orbstack, e.g. pip install -e ."
        )


class _ConnectErrors(BaseStateCallback):
    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors

    def host_connect_error(  # type: ignore[override]
        self, state: Any, host: Any, error: Any
    ) -> None:
        self.errors[host.name] = f"cannot connect: {error}"


def _unwrap(exc: BaseException) -> BaseException:
    """The user's exception inside pyinfra_cli's ``UnexpectedExternalError`` wrapper."""
    inner = getattr(exc, "exception", None)
    return inner if isinstance(inner, BaseException) else exc


def _exception_text(exc: BaseException, what: str) -> str:
    exc = _unwrap(exc)
    if isinstance(exc, PyinfraError):
        return f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{what}: {type(exc).__name__}: {exc}\n{tb.rstrip()}"


def _op_order(state: Any) -> list[str]:
    try:
        return list(state.get_op_order())
    except PyinfraError:  # per-host orders that disagree (API mode): host by host
        order: list[str] = []
        for host in state.inventory:
            order.extend(h for h in host.op_hash_order if h not in order)
        return order


# -- the run ---------------------------------------------------------------------------------


def _run_one(state: Any, host: Any, op_hash: str) -> bool | Exception:
    """Run one operation on one host; an exception is returned, not raised (so gevent does
    not print it, and the caller can attribute it)."""
    try:
        with context.ctx_host.use(host):
            return bool(run_host_op(state, host, op_hash))
    except Exception as exc:
        return exc


def _run_operations(
    state: Any, raised: dict[str, tuple[str, str]], stopped: dict[str, str]
) -> None:
    """pyinfra's default strategy (each operation on every active host, then the next),
    honouring ``_serial`` and ``_parallel``, with exceptions kept per host and operation."""
    state.is_executing = True
    with context.ctx_state.use(state):
        for op_hash in _op_order(state):
            hosts = [h for h in state.inventory if h in state.active_hosts]
            if not hosts:
                return
            meta = state.get_op_meta(op_hash)
            state.trigger_callbacks("operation_start", op_hash)
            if meta.global_arguments.get("_serial"):
                batches = [[h] for h in hosts]
            else:
                size = meta.global_arguments.get("_parallel") or len(hosts)
                batches = [hosts[i : i + size] for i in range(0, len(hosts), size)]
            failed = set()
            for batch in batches:
                greenlets = {state.pool.spawn(_run_one, state, h, op_hash): h for h in batch}
                for greenlet, host in greenlets.items():
                    outcome = greenlet.get()
                    if isinstance(outcome, Exception):
                        raised[host.name] = (op_hash, _exception_text(outcome, "raised"))
                        failed.add(host)
                    elif not outcome:
                        failed.add(host)
            try:
                state.fail_hosts(failed)
            except PyinfraError as exc:  # "No hosts remaining!" or over FAIL_PERCENT
                for host in state.active_hosts:
                    stopped[host.name] = f"stopped before the end: {exc}"
                return
            state.trigger_callbacks("operation_end", op_hash)


def _collect(
    state: Any,
    host: Any,
    op_order: Sequence[str],
    logs: _LogCollector,
    raised: tuple[str, str] | None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    host_ops = state.ops.get(host, {})
    for op_hash in op_order:
        op_data = host_ops.get(op_hash)
        if op_data is None:
            continue
        shared = state.op_meta.get(op_hash)
        names = sorted(shared.names) if shared is not None else []
        entry: dict[str, Any] = {
            "name": ", ".join(names) or "Operation",
            "changed": False,
            "success": False,
            "executed": False,
            "messages": logs.by_op.get((host.name, op_hash), []),
        }
        meta = op_data.operation_meta
        if raised is not None and raised[0] == op_hash:
            entry.update(executed=True, error=raised[1])
        elif meta.is_complete():
            ignore = bool(op_data.global_arguments.get("_ignore_errors"))
            succeeded = bool(meta.did_succeed())
            entry.update(
                changed=bool(meta.did_change()),
                success=succeeded,
                stdout=meta.stdout,
                stderr=meta.stderr,
                commands=[str(c) for c in (getattr(meta, "_commands", None) or ())],
                executed=True,
                ignored_error=ignore and not succeeded,
            )
        results.append(entry)
    return results


def execute(
    hosts: Sequence[HostSpec],
    load: Callable[[], object],
    *,
    base_dir: str,
    deploy_file: str | None = None,
    config: Mapping[str, Any] | None = None,
    inventory: Any | None = None,
) -> dict[str, dict[str, Any]]:
    """Connect to ``hosts`` (or the hosts of a pyinfra ``inventory`` made by the caller), run
    ``load`` on each (it calls operations), run the operations.

    Returns host name -> ``{"error": str | None, "operations": [...]}`` (the JSON form of
    :class:`~pytest_orbstack.deploy.results.DeployResult`).
    """
    _ensure_connector_registered()
    if inventory is None:
        inventory = api_inventory(hosts)
    pyinfra_config = Config(PARALLEL=len(inventory), **dict(config or {}))  # type: ignore[no-untyped-call]
    state = State(check_for_changes=False)  # like `pyinfra -y`: no dry pass
    state.init(inventory, pyinfra_config)
    state.cwd = base_dir
    state.current_deploy_filename = deploy_file
    state.current_op_file_number = 0
    host_errors: dict[str, str] = {}
    state.add_callback_handler(_ConnectErrors(host_errors))  # type: ignore[no-untyped-call]
    raised: dict[str, tuple[str, str]] = {}
    stopped: dict[str, str] = {}

    with _pyinfra_context(state, inventory, pyinfra_config), _collect_logs() as logs:
        state.set_stage(StateStage.Connect)
        try:
            connect_all(state)
        except PyinfraError:  # "No hosts remaining!": every host failed to connect
            if state.active_hosts:
                raise

        state.set_stage(StateStage.Prepare)

        def load_host(host: Any) -> Exception | None:
            try:
                with context.ctx_config.use(state.config.copy()), context.ctx_host.use(host):
                    load()
            except Exception as exc:  # this host's deploy code raised
                return exc
            return None

        active = [h for h in state.inventory if h in state.active_hosts]
        if active:
            with _on_sys_path(base_dir):
                greenlets = {state.pool.spawn(load_host, host): host for host in active}
                for greenlet, host in greenlets.items():
                    error = greenlet.get()
                    if error is not None and host.name not in host_errors:
                        if host in state.failed_hosts and isinstance(error, PyinfraError):
                            # pyinfra failed the host (a fact could not be loaded) and then
                            # raised "No hosts remaining!": the logged lines say why.
                            continue
                        host_errors[host.name] = _exception_text(error, "exception in deploy code")
        for host in list(state.inventory):
            if host in state.failed_hosts and host.name not in host_errors:
                why = "; ".join(logs.by_op.get((host.name, None), [])) or "see the pyinfra log"
                host_errors[host.name] = f"failed while preparing operations: {why}"
            if host.name in host_errors:
                state.active_hosts.discard(host)
                state.failed_hosts.add(host)

        state.set_stage(StateStage.Execute)
        if state.active_hosts:
            _run_operations(state, raised, stopped)
        state.set_stage(StateStage.Disconnect)
        with contextlib.suppress(Exception):
            disconnect_all(state)

        order = _op_order(state)
        results: dict[str, dict[str, Any]] = {}
        for host in state.inventory:
            name = host.data.get("orb_name") or host.name
            results[name] = {
                "error": host_errors.get(host.name) or stopped.get(host.name),
                "operations": _collect(state, host, order, logs, raised.get(host.name)),
            }
    return results


def api_inventory(
    hosts: Sequence[HostSpec],
    groups: Mapping[str, tuple[list[str], Mapping[str, Any]]] | None = None,
    override_data: Mapping[str, Any] | None = None,
) -> Any:
    """A pyinfra ``Inventory`` of ``@orb/NAME`` hosts (API mode), in ``groups`` (group ->
    (machine names, group data)) with ``override_data`` over all."""
    names_data = [(f"@orb/{h.name}", dict(h.data)) for h in hosts]
    pyinfra_groups = {
        group: ([f"@orb/{name}" for name in names], dict(data))
        for group, (names, data) in (groups or {}).items()
    }
    return Inventory(  # type: ignore[no-untyped-call]
        (names_data, {}), override_data=dict(override_data or {}), **pyinfra_groups
    )


# -- in the test process: callables ----------------------------------------------------------


def run_callable(
    hosts: Sequence[HostSpec],
    func: Callable[[], Any],
    *,
    base_dir: str,
    config: Mapping[str, Any] | None = None,
    groups: Mapping[str, tuple[list[str], Mapping[str, Any]]] | None = None,
    override_data: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run a callable deploy in this process (pyinfra API mode, one at a time); with
    ``groups``, the hosts are in them (see :func:`api_inventory`)."""
    with _IN_PROCESS_LOCK:
        _reset_pyinfra_caches()
        inventory = api_inventory(hosts, groups, override_data) if groups else None
        return execute(hosts, func, base_dir=base_dir, config=config, inventory=inventory)


# -- in a deploy process: files --------------------------------------------------------------


def _orbctl_client(settings: Mapping[str, Any]) -> Any:
    from pytest_orbstack.orbctl import Orbctl

    return Orbctl(
        settings["executable"],
        timeout=settings.get("timeout"),
        timeouts=settings.get("timeouts"),
        env=settings.get("env"),
    )


def _cli_inventory(
    make_inventory: Callable[..., Any],
    spec: Mapping[str, Any],
    hosts: Sequence[HostSpec],
    base_dir: str,
) -> Any:
    """The inventory file read by pyinfra_cli's own loader, as ``pyinfra inventory.py
    deploy.py`` from the deploy's directory reads it (groups, the ``group_data/`` directories
    next to the deploy and the inventory, ``--data`` overrides); each host then uses the
    test process's orbctl client settings (timeouts included).  ``make_inventory`` is
    ``pyinfra_cli.inventory.make_inventory``."""
    # The CLI loads inventory and group data files with a State in context (exec_file
    # records the file on it); the deploy's own State is made by execute().
    with context.ctx_state.use(State()):
        inventory = make_inventory(
            spec["file"], override_data=dict(spec.get("override_data") or {}), cwd=base_dir
        )
    clients = {h.name: h.data["orb_client"] for h in hosts}
    for host in inventory:
        name = host.data.get("orb_name")
        if name in clients:
            host.data.orb_client = clients[name]
    return inventory


def main(
    exec_file: Callable[[str], object],
    argv: Sequence[str] | None = None,
    make_inventory: Callable[..., Any] | None = None,
) -> int:
    """Entry point of the deploy process: ``python -m pytest_orbstack.deploy REQUEST.json``.

    ``exec_file`` is pyinfra_cli's own (``pyinfra_cli.util.exec_file``), and
    ``make_inventory`` its inventory loader, handed over by ``__main__`` - the only module
    that imports ``pyinfra_cli``.

    The request names the deploy file, the hosts (name, data, orbctl settings) and the pyinfra
    config; the results go, as JSON, to the request's ``result_path``.  Exit status 0 when the
    results were written (whatever they say), 2 otherwise (traceback on stderr).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m pytest_orbstack.deploy REQUEST.json\n")
        return 2
    with open(args[0], encoding="utf-8") as fh:
        request = json.load(fh)
    pyinfra.is_cli = True
    deploy_file: str = request["deploy_file"]
    base_dir = os.path.dirname(deploy_file)
    os.chdir(base_dir)  # as `pyinfra --chdir DIR`: templates and includes resolve here
    # What the test process could import, the deploy can too (after the deploy's directory).
    sys.path.extend(p for p in request.get("sys_path", []) if p not in sys.path)
    hosts = [
        HostSpec(h["name"], {**h["data"], "orb_client": _orbctl_client(h["orbctl"])})
        for h in request["hosts"]
    ]
    inventory = None
    if "inventory" in request:
        if make_inventory is None:
            sys.stderr.write("an inventory deploy needs pyinfra_cli's make_inventory\n")
            return 2
        inventory = _cli_inventory(make_inventory, request["inventory"], hosts, base_dir)
    started = time.monotonic()
    results = execute(
        hosts,
        lambda: exec_file(deploy_file),
        base_dir=base_dir,
        deploy_file=deploy_file,
        config=request.get("config"),
        inventory=inventory,
    )
    payload = {"hosts": results, "duration": time.monotonic() - started}
    tmp = request["result_path"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    os.replace(tmp, request["result_path"])
    return 0


__all__ = ["HostSpec", "api_inventory", "execute", "known_config_keys", "main", "run_callable"]
