"""Run pyinfra deploys against OrbStack machines: the only module that uses pyinfra's API.

``run_deploy(machines, target)`` builds a fresh pyinfra ``Inventory``/``State``/``Config`` of
``@orb/NAME`` hosts (see :mod:`pytest_orbstack.connector`), connects, loads the target on every
host, runs the operations and reads per-operation results back from pyinfra's state.  The target
is either

* a deploy file (``str`` or path): executed like ``pyinfra`` executes it - ``exec`` of the compiled
  file with pyinfra's ``state``/``host``/``config`` context set, ``__file__`` set, the file's
  directory as ``state.cwd`` (so ``files.put(src="files/x")`` and ``files.template(src=
  "templates/x.j2")`` resolve next to the deploy file) and on ``sys.path`` for the duration; or
* a callable taking no arguments that calls pyinfra operations (a ``@deploy`` function works);
  ``state.cwd`` is the directory of the module defining it.

pyinfra runs in API mode: ``pyinfra_cli`` is never imported (it monkey-patches the interpreter
with gevent), so ``local.include`` is unavailable - compose deploys from ``@deploy`` functions.
pyinfra's global context and its file/template caches are reset for every call and restored
afterwards; calls are serialised by a lock.  Nothing is printed: pyinfra logs to the ``pyinfra``
logger, this module to ``pytest_orbstack``.

Operation identity in API mode is the per-host call order (pyinfra's own API behaviour), so a
deploy that calls different operations on different hosts still runs correctly per host, but an
operation's name may then show the names of both calls.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from pytest_orbstack.errors import OrbstackError

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine

log = logging.getLogger("pytest_orbstack")

DeployTarget: TypeAlias = "str | os.PathLike[str] | Callable[..., Any]"

#: Lines of stderr/stdout per failed operation shown in a DeployError message.
ERROR_TAIL_LINES = 20
#: deploy_fingerprint: files bigger than this are hashed by name and size only.
FINGERPRINT_MAX_FILE_BYTES = 4 * 1024 * 1024
#: deploy_fingerprint: beyond this many files in the deploy's tree, only referenced files count.
FINGERPRINT_MAX_FILES = 2000
#: deploy_fingerprint: directory names never walked.
FINGERPRINT_SKIP_DIRS = frozenset(
    {
        "__pycache__",
        "node_modules",
        "venv",
        ".venv",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
_FINGERPRINT_VERSION = "pytest-orbstack-deploy-fingerprint-v1"

_LOCK = threading.RLock()


def _pyinfra(module: str = "") -> Any:
    """A pyinfra module, typed ``Any`` (pyinfra's API is only partly annotated)."""
    return importlib.import_module(f"pyinfra.{module}" if module else "pyinfra")


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationResult:
    """The outcome of one pyinfra operation on one machine.

    ``changed`` is pyinfra's own notion: the operation succeeded and executed at least one
    command.  ``executed`` is False for an operation that never ran (an earlier operation failed
    on this machine).  ``messages`` holds pyinfra's error/warning log lines for this operation
    (timeouts, upload errors, ...), which carry the reason when there is no command output.
    """

    name: str
    changed: bool
    success: bool
    stdout: str = ""
    stderr: str = ""
    commands: tuple[str, ...] = ()
    executed: bool = True
    ignored_error: bool = False
    messages: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """The operation ran and failed, and the failure was not ignored (``_ignore_errors``)."""
        return self.executed and not self.success and not self.ignored_error

    def describe(self, tail: int = ERROR_TAIL_LINES) -> str:
        """A short human-readable report: name, then the last lines of stderr (or messages)."""
        detail = self.stderr.strip() or self.stdout.strip() or "\n".join(self.messages)
        lines = detail.splitlines()[-tail:] if detail else []
        body = "".join(f"\n      {line}" for line in lines)
        return f"{self.name}{body}"


@dataclass(frozen=True)
class DeployResult:
    """The outcome of a deploy on one machine: its operations, in execution order."""

    machine: str
    operations: tuple[OperationResult, ...] = ()
    duration: float = 0.0
    #: A failure outside any operation: connect error, fact error, exception in deploy code.
    error: str | None = None
    target: str = ""

    @property
    def changed(self) -> bool:
        """Some operation changed something."""
        return any(op.changed for op in self.operations)

    @property
    def changed_operations(self) -> list[OperationResult]:
        return [op for op in self.operations if op.changed]

    @property
    def failed_operations(self) -> list[OperationResult]:
        return [op for op in self.operations if op.failed]

    @property
    def skipped_operations(self) -> list[OperationResult]:
        """Operations that never ran because the deploy stopped on this machine."""
        return [op for op in self.operations if not op.executed]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed_operations

    def operation(self, name: str) -> OperationResult:
        """The first operation whose name equals ``name`` (else contains it)."""
        for op in self.operations:
            if op.name == name:
                return op
        for op in self.operations:
            if name in op.name:
                return op
        raise KeyError(f"no operation named {name!r} in deploy of {self.machine!r}")

    def summary(self) -> str:
        state = "ok" if self.ok else "FAILED"
        changed = len(self.changed_operations)
        return (
            f"{self.machine}: {state}, {len(self.operations)} operations, {changed} changed "
            f"({self.duration:.1f}s)"
        )


class DeployError(OrbstackError):
    """A deploy failed on at least one machine.

    ``results`` maps every machine name to its :class:`DeployResult` (the failing ones and the
    others); ``result`` is the first failing one.
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


# -- targets ---------------------------------------------------------------------------------


def describe_target(target: DeployTarget) -> str:
    if callable(target):
        module = getattr(target, "__module__", None) or "?"
        qualname = getattr(target, "__qualname__", None) or repr(target)
        return f"{module}.{qualname}"
    return os.fspath(target)


def _deploy_path(target: str | os.PathLike[str]) -> Path:
    path = Path(os.fspath(target)).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise FileNotFoundError(
            f"deploy file not found: {path} (relative paths are resolved against the current "
            f"directory, {Path.cwd()})"
        )
    return path.resolve()


def _callable_dir(func: Callable[..., Any]) -> str:
    inner = inspect.unwrap(getattr(func, "_inner", func))
    with contextlib.suppress(TypeError, OSError):
        source_file = inspect.getsourcefile(inner)
        if source_file:
            return str(Path(source_file).resolve().parent)
    return os.getcwd()


# -- pyinfra plumbing ------------------------------------------------------------------------


class _LogCollector(logging.Handler):
    """Collect pyinfra's warning/error lines per (host, operation hash)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_op: dict[tuple[str, str | None], list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        host = _pyinfra("context").ctx_host.get()
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
def _pyinfra_context(state: Any, inventory: Any, config: Any) -> Iterator[None]:
    """Point pyinfra's global context at our objects; restore whatever was there."""
    context = _pyinfra("context")
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
    """pyinfra caches template objects and file checksums by file name for the whole process:
    a file edited between two deploys in one process would otherwise be seen unchanged."""
    pyinfra_util = _pyinfra("api.util")
    pyinfra_util.TEMPLATES.clear()
    pyinfra_util.FILE_SHAS.clear()


def _ensure_connector_registered() -> None:
    if "orb" not in _pyinfra("api.connectors").get_all_connectors():
        raise OrbstackError(
            "the @orb pyinfra connector is not registered (entry point group "
            "'pyinfra.connectors', name 'orb'): reinstall pytest-orbstack, e.g. pip install -e ."
        )


class _Callbacks:
    """A pyinfra state callback handler recording connect errors (built lazily: pyinfra import)."""

    @staticmethod
    def make(errors: dict[str, str]) -> Any:
        base: Any = _pyinfra("api.state").BaseStateCallback

        class Handler(base):  # type: ignore[misc]
            @staticmethod
            def host_connect_error(state: Any, host: Any, error: Any) -> None:
                errors[host.name] = f"cannot connect: {error}"

        return Handler()


def _exception_text(exc: BaseException) -> str:
    if isinstance(exc, _pyinfra("api.exceptions").PyinfraError):
        return f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"exception in deploy code: {type(exc).__name__}: {exc}\n{tb.rstrip()}"


def _collect(
    state: Any,
    host: Any,
    op_order: list[str],
    logs: _LogCollector,
) -> tuple[OperationResult, ...]:
    results: list[OperationResult] = []
    host_ops = state.ops.get(host, {})
    for op_hash in op_order:
        op_data = host_ops.get(op_hash)
        if op_data is None:
            continue
        shared = state.op_meta.get(op_hash)
        names = sorted(shared.names) if shared is not None else []
        name = ", ".join(names) or "Operation"
        meta = op_data.operation_meta
        ignore = bool(op_data.global_arguments.get("_ignore_errors"))
        messages = tuple(logs.by_op.get((host.name, op_hash), ()))
        if meta.is_complete():
            commands = tuple(str(c) for c in (getattr(meta, "_commands", None) or ()))
            results.append(
                OperationResult(
                    name=name,
                    changed=meta.did_change(),
                    success=meta.did_succeed(),
                    stdout=meta.stdout,
                    stderr=meta.stderr,
                    commands=commands,
                    executed=True,
                    ignored_error=ignore and not meta.did_succeed(),
                    messages=messages,
                )
            )
        else:
            results.append(
                OperationResult(
                    name=name, changed=False, success=False, executed=False, messages=messages
                )
            )
    return tuple(results)


def _op_order(state: Any) -> list[str]:
    try:
        return list(state.get_op_order())
    except _pyinfra("api.exceptions").PyinfraError:
        order: list[str] = []
        for host in state.inventory:
            order.extend(h for h in host.op_hash_order if h not in order)
        return order


def _execute(
    machines: list[Machine],
    target: DeployTarget,
    data: Mapping[str, Any] | None,
    config_overrides: Mapping[str, Any] | None,
) -> dict[str, DeployResult]:
    api = _pyinfra("api")
    connect = _pyinfra("api.connect")
    PyinfraError = _pyinfra("api.exceptions").PyinfraError
    run_ops = _pyinfra("api.operations").run_ops
    StateStage = _pyinfra("api.state").StateStage
    context = _pyinfra("context")

    _ensure_connector_registered()
    description = describe_target(target)
    code = None
    if callable(target):
        base_dir = _callable_dir(target)
        deploy_file = None
    else:
        path = _deploy_path(target)
        deploy_file = str(path)
        base_dir = str(path.parent)
        code = compile(path.read_text(encoding="utf-8"), deploy_file, "exec")

    names_data = []
    by_host_name: dict[str, Machine] = {}
    for machine in machines:
        host_name = f"@orb/{machine.name}"
        host_data: dict[str, Any] = {
            **(data or {}),
            "orb_name": machine.name,
            "orb_client": machine.client,
            "orb_orbctl": machine.client.executable,
            "orb_env": dict(machine.client.env) if machine.client.env is not None else None,
        }
        names_data.append((host_name, host_data))
        by_host_name[host_name] = machine

    started = time.monotonic()
    host_errors: dict[str, str] = {}
    with _LOCK:
        _reset_pyinfra_caches()
        inventory = api.Inventory((names_data, {}))
        config = api.Config(PARALLEL=len(machines), **dict(config_overrides or {}))
        state = api.State(check_for_changes=False)  # like `pyinfra -y`: no dry pass
        state.init(inventory, config)
        state.cwd = base_dir
        state.current_deploy_filename = deploy_file
        state.add_callback_handler(_Callbacks.make(host_errors))

        with _pyinfra_context(state, inventory, config), _collect_logs() as logs:
            state.set_stage(StateStage.Connect)
            try:
                connect.connect_all(state)
            except PyinfraError as exc:  # "No hosts remaining!": every connect failed
                log.debug("connect_all: %s", exc)

            state.set_stage(StateStage.Prepare)
            active = list(state.active_hosts)

            def load(host: Any) -> BaseException | None:
                try:
                    with (
                        context.ctx_config.use(state.config.copy()),
                        context.ctx_host.use(host),
                    ):
                        if code is not None:
                            old = state.current_exec_filename
                            state.current_exec_filename = deploy_file
                            try:
                                exec(code, {"__file__": deploy_file})
                            finally:
                                state.current_exec_filename = old
                        else:
                            assert callable(target)
                            target()
                except BaseException as exc:  # reported per host below
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    return exc
                return None

            if active:
                with _on_sys_path(base_dir):
                    greenlets = {state.pool.spawn(load, host): host for host in active}
                    for greenlet, host in greenlets.items():
                        error = greenlet.get()
                        if error is None or host.name in host_errors:
                            continue
                        if host in state.failed_hosts and isinstance(error, PyinfraError):
                            # pyinfra failed the host (a fact could not be loaded) and then
                            # raised "No hosts remaining!": the logged lines say why.
                            continue
                        host_errors[host.name] = _exception_text(error)
            for host in list(state.inventory):
                if host in state.failed_hosts and host.name not in host_errors:
                    host_errors[host.name] = "failed while preparing operations (see messages)"
                if host.name in host_errors:
                    state.active_hosts.discard(host)
                    state.failed_hosts.add(host)

            state.set_stage(StateStage.Execute)
            if state.active_hosts:
                try:
                    run_ops(state)
                except PyinfraError as exc:  # "No hosts remaining!" after the last failure
                    log.debug("run_ops: %s", exc)
            state.set_stage(StateStage.Disconnect)
            with contextlib.suppress(Exception):
                connect.disconnect_all(state)

            order = _op_order(state)
            duration = time.monotonic() - started
            results: dict[str, DeployResult] = {}
            for host in state.inventory:
                machine = by_host_name[host.name]
                error = host_errors.get(host.name)
                prepare_messages = logs.by_op.get((host.name, None), [])
                if error and error.endswith("(see messages)") and prepare_messages:
                    error = error[: -len(" (see messages)")] + ": " + "; ".join(prepare_messages)
                results[machine.name] = DeployResult(
                    machine=machine.name,
                    operations=_collect(state, host, order, logs),
                    duration=duration,
                    error=error,
                    target=description,
                )
    for res in results.values():
        log.info("deploy %s: %s", description, res.summary())
    return results


# -- public helpers --------------------------------------------------------------------------


def _machine_list(machines: Machine | Iterable[Machine]) -> list[Machine]:
    from pytest_orbstack.machine import Machine

    items = [machines] if isinstance(machines, Machine) else list(machines)
    if not items:
        raise ValueError("run_deploy needs at least one machine")
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"machine {item.name!r} given twice")
        seen.add(item.name)
    return items


def run_deploy(
    machines: Machine | Iterable[Machine],
    target: DeployTarget,
    *,
    data: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, DeployResult]:
    """Run ``target`` (deploy file or callable) on ``machines`` in parallel.

    ``data`` becomes host data on every machine (``host.data.KEY`` in the deploy); ``config``
    overrides pyinfra ``Config`` attributes (e.g. ``{"SUDO": True}``).  Returns machine name ->
    :class:`DeployResult`.  Raises :class:`DeployError` (carrying every result) when an operation
    failed, a machine could not be connected, or the deploy code raised.
    """
    machine_list = _machine_list(machines)
    results = _execute(machine_list, target, data, config)
    if any(not r.ok for r in results.values()):
        raise DeployError(results, describe_target(target))
    return results


def assert_idempotent(
    machine: Machine,
    target: DeployTarget,
    *,
    data: Mapping[str, Any] | None = None,
) -> DeployResult:
    """Run ``target`` once more on ``machine``; fail if any operation still changed something.

    Raises :class:`IdempotenceError` (an ``AssertionError``) listing every operation that changed,
    or :class:`DeployError` if the run failed.  Returns the result of this run.
    """
    result = run_deploy([machine], target, data=data)[machine.name]
    if result.changed:
        raise IdempotenceError({machine.name: result}, describe_target(target))
    return result


def orb_deploy(
    machines: Machine | Iterable[Machine],
    target: DeployTarget,
    *,
    data: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    idempotent: bool = False,
) -> dict[str, DeployResult]:
    """Deploy ``target`` to one or several machines at once (the ``orb_deploy`` fixture).

    With ``idempotent=True`` the deploy is run a second time on all machines and
    :class:`IdempotenceError` is raised if anything changed; the first run's results are
    returned either way.
    """
    machine_list = _machine_list(machines)
    first = run_deploy(machine_list, target, data=data, config=config)
    if idempotent:
        second = run_deploy(machine_list, target, data=data, config=config)
        if any(r.changed for r in second.values()):
            raise IdempotenceError(second, describe_target(target))
    return first


# -- fingerprint -----------------------------------------------------------------------------


def _walk_files(root: Path) -> list[Path] | None:
    """Files under ``root`` (skipping hidden and cache directories); None if too many."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in FINGERPRINT_SKIP_DIRS and not d.startswith(".")
        )
        for filename in sorted(filenames):
            if filename.startswith(".") or filename.endswith((".pyc", ".pyo")):
                continue
            found.append(Path(dirpath) / filename)
            if len(found) > FINGERPRINT_MAX_FILES:
                return None
    return found


def _referenced_paths(deploy_file: Path) -> list[Path]:
    """Existing files named by string literals of ``deploy_file`` (relative to its directory or
    the current directory, or absolute); directories contribute their files."""
    try:
        tree = ast.parse(deploy_file.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return []
    found: list[Path] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if not text or "\n" in text or len(text) > 1024 or text.startswith(("http:", "https:")):
            continue
        for base in (deploy_file.parent, Path.cwd()):
            candidate = (base / text).expanduser()
            try:
                if candidate.is_file():
                    found.append(candidate.resolve())
                elif candidate.is_dir() and text not in (".", "..", "/") and len(text) > 1:
                    files = _walk_files(candidate)
                    found.extend(p.resolve() for p in files or [])
                else:
                    continue
            except OSError:
                continue
            break
    return found


def _hash_file(hasher: Any, label: str, path: Path) -> None:
    hasher.update(f"\0file\0{label}\0".encode())
    try:
        size = path.stat().st_size
        if size > FINGERPRINT_MAX_FILE_BYTES:
            hasher.update(f"size={size}".encode())
            return
        hasher.update(path.read_bytes())
    except OSError as exc:
        hasher.update(f"unreadable:{type(exc).__name__}".encode())


def deploy_fingerprint(target: DeployTarget, *, data: Mapping[str, Any] | None = None) -> str:
    """A sha256 hex digest that changes when the deploy would (probably) do something else.

    The rule, for a deploy **file**: the pyinfra version, the deploy file's content, and every
    file under the deploy file's directory tree (relative path + content), sorted by path,
    skipping hidden entries, ``__pycache__``/``*.pyc``, ``venv``/``node_modules`` and VCS/tool
    caches; files over 4 MiB count by path and size only.  If the tree holds more than 2000
    files, only the deploy file plus the files its string literals name are used.  Files named
    by string literals outside the tree (e.g. ``files.put(src="../shared/motd")``, or absolute
    paths) are added too.  For a **callable**: the pyinfra version, its module name, qualname
    and the module's whole source (falling back to the function's bytecode and constants when
    the source is unavailable).  ``data`` (optional) is folded in as sorted JSON.

    Not covered: files read by computed paths outside the deploy's directory, remote content
    (URLs, apt repositories), environment variables.  Use it as part of a cache key, not as
    proof of equality.
    """
    import pyinfra

    hasher = hashlib.sha256()
    hasher.update(_FINGERPRINT_VERSION.encode())
    hasher.update(f"\0pyinfra={getattr(pyinfra, '__version__', '?')}".encode())
    if callable(target):
        func = inspect.unwrap(getattr(target, "_inner", target))
        module_name = getattr(func, "__module__", None) or ""
        qualname = getattr(func, "__qualname__", None) or repr(func)
        hasher.update(f"\0callable\0{module_name}\0{qualname}\0".encode())
        source: str | None = None
        module = sys.modules.get(module_name)
        with contextlib.suppress(TypeError, OSError):
            source = inspect.getsource(module) if module is not None else inspect.getsource(func)
        if source is None:
            code = getattr(func, "__code__", None)
            if code is not None:
                hasher.update(code.co_code)
                hasher.update(repr(code.co_consts).encode())
            else:
                hasher.update(repr(func).encode())
        else:
            hasher.update(source.encode())
    else:
        path = _deploy_path(target)
        root = path.parent
        hasher.update(f"\0deploy\0{path.name}\0".encode())
        hasher.update(path.read_bytes())
        tree = _walk_files(root)
        files: dict[str, Path] = {}
        for file in tree if tree is not None else []:
            files[file.relative_to(root).as_posix()] = file
        for ref in _referenced_paths(path):
            try:
                label = ref.relative_to(root).as_posix()
            except ValueError:
                label = str(ref)
            files.setdefault(label, ref)
        for label in sorted(files):
            _hash_file(hasher, label, files[label])
    if data:
        hasher.update(b"\0data\0")
        hasher.update(json.dumps(dict(data), sort_keys=True, default=repr).encode())
    return hasher.hexdigest()


__all__ = [
    "DeployError",
    "DeployResult",
    "DeployTarget",
    "IdempotenceError",
    "OperationResult",
    "assert_idempotent",
    "deploy_fingerprint",
    "describe_target",
    "orb_deploy",
    "run_deploy",
]
