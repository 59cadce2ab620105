"""pytest entry point: options, the ``orbstack`` marker, fixtures and hooks.

Hooks and fixtures delegate: decisions live in :mod:`pytest_orbstack.policy`, making and removing
machines in :mod:`pytest_orbstack.lifecycle` and :mod:`pytest_orbstack.supply`, cleanup after
crashes in :mod:`pytest_orbstack.cleanup`, options in :mod:`pytest_orbstack.options`, specs in
:mod:`pytest_orbstack.spec`, reporting in :mod:`pytest_orbstack.report`, and the per-process
composition root, :class:`~pytest_orbstack.state.OrbState`, in :mod:`pytest_orbstack.state`.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import options
from pytest_orbstack.deploy.targets import current_requester, requested_by
from pytest_orbstack.errors import ConfigError, OrbstackError
from pytest_orbstack.lifecycle import label_for
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.policy import demand_unit, keep_after_use, no_test_mode
from pytest_orbstack.report import summary_lines
from pytest_orbstack.spec import MachineSpec, build_spec, kwargs_text, marker_signature
from pytest_orbstack.state import OrbState, run_context, will_run
from pytest_orbstack.topology import (
    OrbInventory,
    TopologySpec,
    demand_units,
    inventory_of,
    make_topology,
)
from pytest_orbstack.topology_sharing import SharedTopologies, topology_unit
from pytest_orbstack.vocabulary import Role

log = logging.getLogger("pytest_orbstack")

FACTORY_FIXTURES = frozenset({"orb_vm_factory", "orb_vm_factory_module", "orb_vm_factory_session"})
MACHINE_FIXTURES = FACTORY_FIXTURES | {
    "orb_vm",
    "orbctl",
    "orb_host",
    "orb_deploy",
    "orb_inventory",
}
MARKER_DOC = (
    f"{marker_signature()}: the OrbStack machine `orb_vm` gives this test (pytest-orbstack)"
)

machines_key = pytest.StashKey[list[Machine]]()
state_key = pytest.StashKey[OrbState]()


# -- configuration ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(trylast=True)  # after pytest's tmpdir plugin has set up the base temp
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_DOC)
    settings = options.settings_from_config(config)
    config.stash[state_key] = OrbState(config, settings, run_context(config))
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
            state.check_item(item, getattr(item, "fixturenames", ()))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise pytest.UsageError("invalid orbstack configuration:\n  " + "\n  ".join(problems))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Warm-up: start bases, templates, session machines and the pool as soon as demand is
    known, in the order the tests will ask for them (the first test's machine first)."""
    state = session.config.stash.get(state_key, None)
    if state is None or no_test_mode(session.config.option) is not None:
        return
    order: dict[MachineSpec, None] = {}  # specs by first use
    fresh: dict[MachineSpec, set[str]] = {}  # units of fresh-machine demand
    factories = False  # machines of any spec may be asked for once tests run
    for item in session.items:
        names = getattr(item, "fixturenames", ())
        if MACHINE_FIXTURES.isdisjoint(names) or not will_run(item):
            continue  # no machine for a test a skip (or xfail(run=False)) mark stops
        factories = factories or not FACTORY_FIXTURES.isdisjoint(names)
        try:
            topology = state.topology_for(item) if "orb_inventory" in names else None
            if topology is not None:
                unit = demand_unit(topology.isolation, nodeid=item.nodeid, path=str(item.path))
                for spec, machine_unit in demand_units(topology, unit):
                    order.setdefault(spec)
                    fresh.setdefault(spec, set()).add(machine_unit)
                continue
            if "orb_vm" not in names:
                continue
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
    state.supply().plan(
        ((spec, len(fresh[spec]) if spec in fresh else None) for spec in order),
        open_ended=factories,
    )


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
        self.topologies: dict[TopologySpec, OrbInventory | OrbstackError] = {}

    def fresh(self, spec: MachineSpec, kind: Role, label: str) -> Machine:
        return self.state.supply().take(spec, kind, label)

    def topology(self, topology: TopologySpec, where: str) -> OrbInventory:
        """This scope's inventory of ``topology``: made (and deployed) once; a failure is
        kept, so every test of the scope reports it instead of making it again."""
        made = self.topologies.get(topology)
        if made is None:
            kind: Role = "function" if topology.isolation == "function" else "module"

            def take(spec: MachineSpec) -> Machine:
                machine = self.fresh(spec, kind, "inv")
                self.extra.append(machine)
                return machine

            try:
                made = make_topology(topology, take, where=where, recorder=self.state.recorder)
            except OrbstackError as exc:
                made = exc
            self.topologies[topology] = made
        if isinstance(made, OrbstackError):
            raise made
        return made

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
    _served(_orb_state, request.node, machine, time.monotonic() - started, spec.isolation)
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
    state: OrbState, scope: _Scope, request: pytest.FixtureRequest, kind: Role
) -> Callable[..., Machine]:
    def make(**kwargs: Any) -> Machine:
        # The test (or fixture) calling: a session factory serves many test files.
        requester = current_requester()
        who = requester.label if requester is not None else request.node.nodeid
        where = f"{who}: {request.fixturename}({kwargs_text(kwargs)})"
        spec = build_spec(
            {"isolation": "function", **kwargs},
            where=where,
            base_dir=requester.base_dir if requester is not None else Path.cwd(),
            default_image=state.settings.default_image,
        )
        started = time.monotonic()
        with _clear_errors(spec):
            if spec.isolation == "session":
                machine = state.manager().session(spec)
            else:
                machine = scope.fresh(spec, kind, "f")
                scope.extra.append(machine)
        role = "session" if spec.isolation == "session" else "factory"
        _served(state, request.node, machine, time.monotonic() - started, role)
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


@pytest.fixture(scope="session")
def _orb_shared_topologies(_orb_state: OrbState) -> SharedTopologies:
    return SharedTopologies(_orb_state)


@pytest.fixture
def orb_inventory(
    request: pytest.FixtureRequest,
    _orb_state: OrbState,
    _orb_module_scope: _Scope,
    _orb_function_scope: _Scope,
    _orb_session_scope: _Scope,
    _orb_shared_topologies: SharedTopologies,
) -> Iterator[OrbInventory]:
    """The machines of this test's ``@pytest.mark.orbstack(inventory={...})``, in their groups,
    deployed once as one pyinfra inventory: ``orb_inventory["web"]``, iteration over all,
    ``.deploy(target, **data)``, ``.assert_idempotent(...)``, ``.write_inventory(path)``.
    Under xdist a module or session topology is the run's one, shared by every worker, its
    tests taking turns (:mod:`pytest_orbstack.topology_sharing`)."""
    topology = _orb_state.topology_for(request.node)
    assert topology is not None  # checked at collection
    scopes = {"function": _orb_function_scope, "module": _orb_module_scope}
    scope = scopes.get(topology.isolation, _orb_session_scope)
    shared = _orb_state.run.is_worker and topology.isolation != "function"
    started = time.monotonic()
    with ExitStack() as turn:
        try:
            if shared:
                unit = topology_unit(topology.isolation, str(request.node.path))
                inventory = _orb_shared_topologies.get(topology, unit, request.node.nodeid)
                turn.enter_context(_orb_shared_topologies.turn(topology, unit))
            else:
                inventory = scope.topology(topology, request.node.nodeid)
        except OrbstackError as exc:
            pytest.fail(f"pytest-orbstack: no {topology.describe()}: {exc}", pytrace=False)
        waited = time.monotonic() - started  # once for the test, not once per machine
        for index, machine in enumerate(inventory):
            _served(_orb_state, request.node, machine, waited if index == 0 else 0.0, "inventory")
        _orb_state.recorder.topology(request.node.nodeid, inventory.names())
        yield inventory


@pytest.fixture
def orb_deploy(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``orb_deploy(target, *machines, sudo=False, config=None, **data)``: run a pyinfra deploy
    on several machines at once (default: this test's ``orb_vm``); returns
    ``{name: DeployResult}``.  ``orb_deploy(target, inventory={"web": [m1, m2]},
    group_data={...}, **data)``: one pyinfra run over those groups (see ``orb_inventory``)."""
    from pytest_orbstack.deploy.runner import run_deploy
    from pytest_orbstack.deploy.targets import check_target

    def deploy(
        target: Any,
        *machines: Machine,
        sudo: bool = False,
        config: dict[str, Any] | None = None,
        inventory: dict[str, list[Machine]] | None = None,
        group_data: dict[str, dict[str, Any]] | None = None,
        **data: Any,
    ) -> Any:
        check_target(target, "orb_deploy")
        if inventory is not None or group_data is not None:
            if machines or inventory is None:
                raise ConfigError("orb_deploy: give inventory= (groups of machines) or machines")
            hosts = inventory_of(inventory, group_data, where=request.node.nodeid)
            return hosts.deploy(target, sudo=sudo, config=config, **data)
        chosen = list(machines) or [request.getfixturevalue("orb_vm")]
        return run_deploy(chosen, target, data=data, config=config, sudo=sudo)

    return deploy


def _served(state: OrbState, item: Any, machine: Machine, waited: float, role: str) -> None:
    state.recorder.served(machine.name, item.nodeid, waited, role=role)
    item.stash.setdefault(machines_key, []).append(machine)
    machine.on_deploy = state.deployed_in_test


# -- who asks for a deploy (the one path rule, pytest_orbstack.deploy.targets) ----------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    state = item.config.stash.get(state_key, None)
    if state is not None:
        state.current_test = item.nodeid
    try:
        with requested_by(item.path, item.nodeid):
            return (yield)
    finally:
        if state is not None:
            state.current_test = None


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Inside a fixture, relative deploy paths follow the file that defines the fixture."""
    path = _source_file(fixturedef.func)
    if path is None:
        return (yield)
    requester = current_requester()
    label = f"{requester.label} (fixture {fixturedef.argname})" if requester else fixturedef.argname
    with requested_by(path, label):
        return (yield)


def _source_file(func: Callable[..., Any]) -> str | None:
    try:
        return inspect.getsourcefile(inspect.unwrap(func))
    except (TypeError, OSError):
        return None


# -- reporting and teardown -------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if item.stash.get(machines_key, None):
        item.config.stash[state_key].recorder.test_started()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    machines = item.stash.get(machines_key, [])
    if machines and call.when == "teardown":  # pytest's junitxml reads the teardown report's
        recorder = item.config.stash[state_key].recorder
        item.user_properties.extend(recorder.junit_properties(item.nodeid))
    report = yield
    if machines and call.when == "call":
        item.config.stash[state_key].recorder.test_body(
            item.nodeid, call.start, call.stop, [m.name for m in machines], report.outcome
        )
    if report.failed and machines and report.when in ("setup", "call"):
        state = item.config.stash[state_key]
        for machine in machines:
            report.sections.append((f"orbstack machine {machine.name}", _details(state, machine)))
            state.failed_machines.add(machine.name)
    return report


def _details(state: OrbState, machine: Machine) -> str:
    from pytest_orbstack.diagnostics import machine_details

    return machine_details(machine, sorted(state.touched_units.get(machine.name, ())))


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
