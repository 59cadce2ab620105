"""pytest entry point: options, the ``orbstack`` marker, fixtures and hooks.

Hooks and fixtures delegate: decisions live in :mod:`pytest_orbstack.policy`, making and removing
machines in :mod:`pytest_orbstack.lifecycle` and :mod:`pytest_orbstack.supply`, cleanup after
crashes in :mod:`pytest_orbstack.cleanup`, options in :mod:`pytest_orbstack.options`, specs in
:mod:`pytest_orbstack.spec`, reporting in :mod:`pytest_orbstack.report`.  :class:`OrbState` is
the per-process composition root (one per ``pytest.Config``), as pytest's ``Cache`` is for the
cache provider.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import options
from pytest_orbstack.cleanup import reap, spawn_watchdog
from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.errors import ConfigError, OrbstackError
from pytest_orbstack.lifecycle import MachineManager, label_for
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.policy import demand_unit, keep_after_use
from pytest_orbstack.registry import Owner, Registry
from pytest_orbstack.report import Recorder, failure_section, summary_lines, write_json
from pytest_orbstack.retry import RetryPolicy
from pytest_orbstack.settings import RunContext, Settings
from pytest_orbstack.spec import MachineSpec, build_spec, marker_signature, new_run_id
from pytest_orbstack.supply import SharedPool, Supply

log = logging.getLogger("pytest_orbstack")

MACHINE_FIXTURES = frozenset(
    {"orb_vm", "orb_vm_factory", "orb_vm_factory_module", "orb_vm_factory_session", "orbctl",
     "orb_host", "orb_deploy"}
)  # fmt: skip
MARKER_DOC = (
    f"{marker_signature()}: the OrbStack machine `orb_vm` gives this test (pytest-orbstack)"
)

item_spec_key = pytest.StashKey[MachineSpec]()
machines_key = pytest.StashKey[list[Machine]]()
state_key = pytest.StashKey["OrbState"]()


@dataclass
class OrbState:
    """Per-process plugin state: settings, run identity, and the lazily built manager."""

    config: pytest.Config
    settings: Settings
    run: RunContext
    recorder: Recorder = field(default_factory=Recorder)
    _manager: MachineManager | None = None
    _supply: Supply | None = None
    _unavailable: str | None = None
    _probed: bool = False
    failed_machines: set[str] = field(default_factory=set)

    @property
    def registry(self) -> Registry:
        path = self.settings.state_dir / f"registry-{self.settings.registry_key}.json"
        return Registry(path)

    def unavailable(self) -> str | None:
        if not self._probed:
            self._unavailable = options.probe(self.settings)
            self._probed = True
        return self._unavailable

    def manager(self) -> MachineManager:
        if self._manager is None:
            client = Orbctl(
                self.settings.executable,
                timeout=self.settings.timeout,
                observer=self.recorder.count_call,
            )
            self._manager = MachineManager(
                client, self.settings, self.run, self.registry, self.recorder
            )
            if self.config.get_verbosity() > 0 and not self.run.is_worker:
                self._manager.progress = self._progress
            self._start_watchdog()
        return self._manager

    def _progress(self, message: str) -> None:
        """Show a slow step with -v (main thread only: background work stays quiet)."""
        if threading.current_thread() is not threading.main_thread():
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"orbstack: {message}")
        else:
            reporter.write_line(f"orbstack: {message}")

    def supply(self) -> Supply:
        if self._supply is None:
            workerinput = getattr(self.config, "workerinput", None) or {}
            workers = int(workerinput.get("workercount", 1))
            self._supply = Supply(self.manager(), self.settings.pool_size, workers)
        return self._supply

    def _start_watchdog(self) -> None:
        assert self._manager is not None
        if os.environ.get("ORBSTACK_WATCHDOG", "1") == "0":
            return  # the start-up reaper of the next run still cleans up
        manager = self._manager

        def start() -> dict[str, Any]:
            return {"pid": spawn_watchdog(manager.registry, self.run, manager.client)}

        self.run.shared.get_or_make("watchdog", start)

    def spec_for(self, item: pytest.Item) -> MachineSpec:
        spec = item.stash.get(item_spec_key, None)
        if spec is None:
            spec = item.stash[item_spec_key] = marker_spec(item, self.settings)
        return spec

    def close(self, *, interrupted: bool) -> None:
        """This process is done with machines: stop background work, remove what it holds, and
        (xdist worker) hand its report to the controller."""
        if self._supply is not None:
            for error in self._supply.shutdown(interrupted=interrupted):
                log.warning("pytest-orbstack: %s", error)
        if self._manager is not None:
            self._manager.finish_process()
        if self.run.is_worker:
            self.run.shared.write(
                f"report-{self.run.worker}.json",
                {**self.recorder.to_json(), "failed_machines": sorted(self.failed_machines)},
            )

    def finish_run(self) -> None:
        """Controller / single process, after every worker closed: merge the workers' reports,
        remove the run's shared machines and leftovers (keep policy aside), write the report."""
        for fragment in self.run.shared.read_all("report-gw*.json"):
            self.recorder.merge(fragment)
            self.failed_machines.update(fragment.get("failed_machines", []))
        if self.registry.of_run(self.run.run_id):
            self.manager().finish_run(
                failed=self.failed_machines, unclaimed=SharedPool(self.run.shared).leftovers()
            )
        if self.settings.report_path is not None:
            write_json(
                self.settings.report_path,
                self.recorder,
                {"run_id": self.run.run_id, "backend": self.settings.backend},
            )

    def reap_dead_runs(self) -> list[str]:
        """Start-up reaper: delete machines of earlier runs whose owner died."""
        registry = self.registry
        if not self.settings.executable or not registry.reapable(exclude_run=self.run.run_id):
            return []
        client = Orbctl(self.settings.executable, timeout=self.settings.timeout)
        policy = RetryPolicy.for_retries(self.settings.retries)
        return reap(client, registry, policy, exclude_run=self.run.run_id)


# -- configuration ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(trylast=True)  # after pytest's tmpdir plugin has set up the base temp
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_DOC)
    settings = options.settings_from_config(config)
    config.stash[state_key] = OrbState(config, settings, _run_context(config))
    from pytest_orbstack import fixtures_testinfra, testinfra_backend

    config.pluginmanager.register(fixtures_testinfra, "orbstack-testinfra-fixtures")
    if settings.executable:
        executable, timeout = settings.executable, settings.timeout
        testinfra_backend.register_orb_backend(lambda: Orbctl(executable, timeout=timeout))
    else:
        testinfra_backend.register_orb_backend()
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "orbstack-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    from pytest_orbstack import testinfra_backend

    testinfra_backend.forget_client_factory()
    state = config.stash.get(state_key, None)
    if state is not None and not state.run.is_worker:
        # Every worker is gone: the run's lock files and handles are no longer needed.
        shutil.rmtree(state.run.shared.path, ignore_errors=True)


def _run_context(config: pytest.Config) -> RunContext:
    """The run's identity: made by the controller (or single process), handed to xdist workers
    through ``workerinput``.  The shared directory is the run's own temporary directory (not
    pytest's base temp: it must exist before any fixture, and is removed at the run's end)."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput and "orbstack_run" in workerinput:
        info = workerinput["orbstack_run"]
        owner = Owner(pid=info["pid"], started=info["started"], host=info["host"])
        return RunContext(
            run_id=info["run_id"],
            worker=str(workerinput.get("workerid", "gw")),
            owner=owner,
            shared=SharedDir(Path(info["shared"])),
        )
    run_id = new_run_id()
    return RunContext(
        run_id=run_id,
        worker="main",
        owner=Owner.current(),
        shared=SharedDir(Path(tempfile.mkdtemp(prefix=f"orbstack-{run_id}-"))),
    )


class _XdistHooks:
    """Registered only when pytest-xdist is active: hand the run identity to workers."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        state = node.config.stash[state_key]
        run = state.run
        node.workerinput["orbstack_run"] = {
            "run_id": run.run_id,
            "pid": run.owner.pid,
            "started": run.owner.started,
            "host": run.owner.host,
            "shared": str(run.shared.path),
        }


def marker_spec(item: pytest.Item, settings: Settings) -> MachineSpec:
    """The spec of ``item``'s ``orbstack`` markers (closest wins, key by key)."""
    values: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("orbstack"))):
        if mark.args:
            raise ConfigError(
                f"{item.nodeid}: @pytest.mark.orbstack takes keyword arguments only "
                f"(got positional {mark.args!r}); write image={mark.args[0]!r}"
            )
        values.update(mark.kwargs)
    where = f"{item.nodeid}: @pytest.mark.orbstack({_kwargs_text(values)})"
    return build_spec(
        values, where=where, base_dir=item.path.parent, default_image=settings.default_image
    )


def _kwargs_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _uses_machines(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return bool(MACHINE_FIXTURES.intersection(names))


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = config.stash[state_key]
    problems = []
    for item in items:
        if not _uses_machines(item) and item.get_closest_marker("orbstack") is None:
            continue
        try:
            state.spec_for(item)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise pytest.UsageError("invalid orbstack configuration:\n  " + "\n  ".join(problems))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Warm-up: start bases, templates, session machines and the pool as soon as demand is
    known, in the order the tests will ask for them (the first test's machine first)."""
    state = session.config.stash.get(state_key, None)
    if state is None or session.config.option.collectonly:
        return
    order: dict[MachineSpec, None] = {}  # specs by first use
    fresh: dict[MachineSpec, set[str]] = {}  # units of fresh-machine demand
    for item in session.items:
        if "orb_vm" not in getattr(item, "fixturenames", ()):
            continue
        try:
            spec = state.spec_for(item)
        except ConfigError:
            return  # reported as a usage error by pytest_collection_modifyitems
        order.setdefault(spec)
        unit = demand_unit(spec.isolation, nodeid=item.nodeid, path=str(item.path))
        if unit is not None:
            fresh.setdefault(spec, set()).add(unit)
    if not order:
        return
    if state.unavailable():
        return  # the tests will be skipped (or error with --orbstack-required)
    state.supply().plan((spec, len(fresh[spec]) if spec in fresh else None) for spec in order)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _orb_state(pytestconfig: pytest.Config) -> OrbState:
    state = pytestconfig.stash[state_key]
    reason = state.unavailable()
    if reason:
        if options.required(pytestconfig):
            pytest.fail(f"pytest-orbstack: {reason} (--orbstack-required)", pytrace=False)
        pytest.skip(f"pytest-orbstack: {reason}")
    return state


@pytest.fixture(scope="session")
def orbctl(_orb_state: OrbState) -> Orbctl:
    """The configured ``orbctl`` client (the simulator with ``--orbstack-backend=sim``)."""
    return _orb_state.manager().client


class _Scope:
    """Fresh machines made for one fixture scope, released when it ends."""

    def __init__(self, state: OrbState) -> None:
        self.state = state
        self.machines: dict[MachineSpec, Machine] = {}
        self.extra: list[Machine] = []

    def fresh(self, spec: MachineSpec, kind: str, label: str) -> Machine:
        return self.state.supply().take(spec, kind, label)

    def release_all(self) -> None:
        errors: list[str] = []
        for machine in [*self.machines.values(), *self.extra]:
            failed = machine.name in self.state.failed_machines
            keep = keep_after_use(self.state.settings.keep, failed=failed)
            try:
                self.state.supply().release(machine, keep=keep)
            except OrbstackError as exc:
                errors.append(f"{machine.name}: {exc}")
        self.machines.clear()
        self.extra.clear()
        if errors:
            raise OrbstackError("could not delete machine(s): " + "; ".join(errors))


@pytest.fixture(scope="module")
def _orb_module_scope(_orb_state: OrbState) -> Iterator[_Scope]:
    scope = _Scope(_orb_state)
    yield scope
    scope.release_all()


@pytest.fixture(scope="session")
def _orb_session_scope(_orb_state: OrbState) -> Iterator[_Scope]:
    scope = _Scope(_orb_state)
    yield scope
    scope.release_all()


@pytest.fixture
def _orb_function_scope(_orb_state: OrbState, request: pytest.FixtureRequest) -> Iterator[_Scope]:
    scope = _Scope(_orb_state)
    yield scope
    scope.release_all()


@pytest.fixture
def orb_vm(
    request: pytest.FixtureRequest,
    _orb_state: OrbState,
    _orb_module_scope: _Scope,
    _orb_function_scope: _Scope,
) -> Machine:
    """The machine this test's ``@pytest.mark.orbstack`` describes, at its isolation level
    (without a marker: the default image, one machine for the whole session)."""
    spec = _orb_state.spec_for(request.node)
    started = time.monotonic()
    with _clear_errors(spec):
        machine = _orb_vm(spec, request, _orb_state, _orb_module_scope, _orb_function_scope)
    _served(_orb_state, request.node, machine, time.monotonic() - started)
    return machine


@contextmanager
def _clear_errors(spec: MachineSpec) -> Iterator[None]:
    """A machine that cannot be had fails the test with orbctl's own words, not a traceback
    through the retry machinery."""
    try:
        yield
    except OrbstackError as exc:
        pytest.fail(f"pytest-orbstack: no machine for {spec.describe()}: {exc}", pytrace=False)


def _orb_vm(
    spec: MachineSpec,
    request: pytest.FixtureRequest,
    _orb_state: OrbState,
    _orb_module_scope: _Scope,
    _orb_function_scope: _Scope,
) -> Machine:
    if spec.isolation == "session":
        machine = _orb_state.manager().session(spec)
    elif spec.isolation == "module":
        machine = _orb_module_scope.machines.get(spec)  # type: ignore[assignment]
        if machine is None:
            label = label_for(request.node.module.__name__)
            machine = _orb_module_scope.machines[spec] = _orb_module_scope.fresh(
                spec, "module", label
            )
    else:
        machine = _orb_function_scope.fresh(spec, "function", label_for(request.node.nodeid))
        _orb_function_scope.machines[spec] = machine
    return machine


def _factory(
    state: OrbState, scope: _Scope, request: pytest.FixtureRequest, kind: str
) -> Callable[..., Machine]:
    def make(**kwargs: Any) -> Machine:
        where = f"{request.node.nodeid}: {request.fixturename}({_kwargs_text(kwargs)})"
        spec = build_spec(
            {"isolation": "function", **kwargs},
            where=where,
            base_dir=request.path.parent,
            default_image=state.settings.default_image,
        )
        started = time.monotonic()
        with _clear_errors(spec):
            if spec.isolation == "session":
                machine = state.manager().session(spec)
            else:
                machine = scope.fresh(spec, kind, "f")
                scope.extra.append(machine)
        _served(state, request.node, machine, time.monotonic() - started)
        return machine

    return make


@pytest.fixture
def orb_vm_factory(
    _orb_state: OrbState, _orb_function_scope: _Scope, request: pytest.FixtureRequest
) -> Callable[..., Machine]:
    """``orb_vm_factory(image=..., arch=..., user=..., deploy=..., isolation=...)`` makes
    further machines; they are deleted when the test ends (keep policy aside)."""
    return _factory(_orb_state, _orb_function_scope, request, "factory")


@pytest.fixture(scope="module")
def orb_vm_factory_module(
    _orb_state: OrbState, _orb_module_scope: _Scope, request: pytest.FixtureRequest
) -> Callable[..., Machine]:
    """Like ``orb_vm_factory``, but machines live until the module's tests are done."""
    return _factory(_orb_state, _orb_module_scope, request, "factory")


@pytest.fixture(scope="session")
def orb_vm_factory_session(
    _orb_state: OrbState, _orb_session_scope: _Scope, request: pytest.FixtureRequest
) -> Callable[..., Machine]:
    """Like ``orb_vm_factory``, but machines live until the session ends."""
    return _factory(_orb_state, _orb_session_scope, request, "factory")


@pytest.fixture
def orb_deploy(orb_vm: Machine) -> Callable[..., Any]:
    """``orb_deploy(target, *machines, **data)``: run a pyinfra deploy on several machines at
    once (default: this test's ``orb_vm``); returns ``{name: DeployResult}``."""
    from pytest_orbstack.deploy import run_deploy

    def deploy(target: Any, *machines: Machine, **data: Any) -> Any:
        return run_deploy(list(machines) or [orb_vm], target, data=data)

    return deploy


def _served(state: OrbState, item: Any, machine: Machine, waited: float) -> None:
    state.recorder.served(machine.name, item.nodeid, waited)
    item.stash.setdefault(machines_key, []).append(machine)


# -- reporting and teardown -------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if item.stash.get(machines_key, None):
        item.config.stash[state_key].recorder.test_started()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    machines = item.stash.get(machines_key, [])
    if report.failed and machines and report.when in ("setup", "call"):
        state = item.config.stash[state_key]
        for machine in machines:
            report.sections.append((f"orbstack machine {machine.name}", _details(machine)))
            state.failed_machines.add(machine.name)
    return report


def _details(machine: Machine) -> str:
    facts = [f"spec: {machine.spec.describe() if machine.spec else '?'}"]
    log_tail = ""
    try:
        info = machine.info()
        facts.append(f"state: {info.state}, ip4: {info.ip4 or '-'}, image: {info.record.image}")
        log_tail = machine.logs()[-4000:]
    except OrbstackError as exc:
        facts.append(f"(could not inspect it: {exc})")
    facts.append(f"log in: orb -m {machine.name}   or   ssh {machine.ssh_destination}")
    commands = [f"$ {r.argv!r} -> {r.returncode}" for r in machine.history]
    return failure_section(machine.name, facts, commands[-10:], log_tail)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(state_key, None)
    if state is None:
        return
    state.close(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
    if not state.run.is_worker:
        state.finish_run()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start-up reaper: delete machines of earlier runs whose owner died (controller only)."""
    state = session.config.stash.get(state_key, None)
    if state is None or state.run.is_worker:
        return
    state.recorder.run_started = time.time()
    try:
        deleted = state.reap_dead_runs()
    except OrbstackError as exc:
        log.warning("pytest-orbstack: could not reap machines of dead runs: %s", exc)
        return
    if deleted:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"pytest-orbstack: deleted {len(deleted)} machine(s) left by dead runs: "
                + ", ".join(deleted)
            )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(state_key, None)
    if state is None or state.run.is_worker:
        return
    lines = summary_lines(state.recorder, verbose=config.getoption("verbose") > 0)
    if not lines:
        return
    terminalreporter.write_sep("-", "orbstack machines")
    for line in lines:
        terminalreporter.write_line(line)
