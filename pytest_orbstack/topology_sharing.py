"""One module (or session) topology for the whole run, shared by every xdist worker.

Without xdist a module topology lives in the module's fixture scope (``plugin._Scope``).  Under
xdist the tests of one module may run on several workers; each used to make (and deploy) its own
topology.  Here a topology of ``module`` or ``session`` isolation is keyed by the run, its spec
and its unit (the module's path, or the session) in the run's shared directory
(:class:`~pytest_orbstack.coordination.SharedDir`, xdist's filelock recipe, as session machines
are): the first worker that needs it takes its machines from its supply and runs the deploy
**once** while holding the key's lock; the others wait on that lock and then read the handle
(group -> machine names).  A failure is recorded in the handle, so every worker reports it
instead of trying again.

The machines then belong to the run, not to the worker that made them: their registry records
become ``session`` records (the keep policy applies at the run's end, as for session
machines), the worker forgets them, and the controller deletes them in its
``pytest_sessionfinish`` after every worker is done; the watchdog and the start-up reaper
cover a run that dies.

Tests that share a topology take turns (:meth:`SharedTopologies.turn`, a run-wide lock per
topology, held from the test's set-up to its teardown), so they see it as they would on one
worker: a test that stops a backend and starts it again never overlaps another test of the
same topology.  They may run in another order than the file's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from pytest_orbstack.errors import OrbstackError
from pytest_orbstack.topology import OrbInventory, TopologySpec, make_topology

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.spec import MachineSpec
    from pytest_orbstack.state import OrbState


def shared_key(topology: TopologySpec, unit: str) -> str:
    """The run-wide key of ``topology`` for ``unit`` (a module's path, or ``session``): the
    same in every worker (the spec's ``repr`` is plain strings, numbers and tuples)."""
    digest = hashlib.sha256(f"{unit}\0{topology!r}".encode()).hexdigest()[:16]
    return f"topology-{digest}"


class SharedTopologies:
    """This process's view of the run's shared topologies (see the module docstring)."""

    def __init__(self, state: OrbState) -> None:
        self.state = state
        self._made: dict[str, OrbInventory | OrbstackError] = {}

    def get(self, topology: TopologySpec, unit: str, where: str) -> OrbInventory:
        """The run's one inventory of ``topology`` for ``unit``: made and deployed by whichever
        process asks first, read by the others."""
        key = shared_key(topology, unit)
        made = self._made.get(key)
        if made is None:
            try:
                made = self._get(key, topology, where)
            except OrbstackError as exc:
                made = exc
            self._made[key] = made
        if isinstance(made, OrbstackError):
            raise made
        return made

    def _get(self, key: str, topology: TopologySpec, where: str) -> OrbInventory:
        handle, made_here = self.state.run.shared.get_or_make(
            key, lambda: self._make(topology, where)
        )
        if "error" in handle:
            raise OrbstackError(f"made by another worker, it failed: {handle['error']}")
        specs = {g.name: g.spec for g in topology.groups}
        manager = self.state.manager()
        groups: dict[str, list[Machine]] = {}
        for group, names in dict(handle["groups"]).items():
            spec = specs[group]
            for name in names:
                if not made_here:  # the maker's recorder has it; count this worker's tests too
                    self.state.recorder.machine(name, spec.image, spec.isolation, "module")
                groups.setdefault(group, []).append(manager.machine(name, spec))
        return OrbInventory(groups, topology.group_data, where=where)

    def _make(self, topology: TopologySpec, where: str) -> dict[str, Any]:
        supply = self.state.supply()
        taken: list[Machine] = []

        def take(spec: MachineSpec) -> Machine:
            machine = supply.take(spec, "module", "inv")
            taken.append(machine)
            return machine

        try:
            inventory = make_topology(topology, take, where=where, recorder=self.state.recorder)
        except BaseException:
            for machine in taken:
                with suppress(OrbstackError):  # else the run's end (or the reaper) removes it
                    supply.release(machine)
            raise
        # The run's now: the controller deletes them when every worker is done.
        manager = self.state.manager()
        for machine in taken:
            manager.forget_owned(machine.name)
            self.state.registry.update(machine.name, kind="session")
        return {"groups": inventory.names()}

    @contextmanager
    def turn(self, topology: TopologySpec, unit: str) -> Iterator[None]:
        """Hold the run-wide turn of ``topology`` for ``unit`` (one test at a time)."""
        with self.state.run.shared.lock(f"{shared_key(topology, unit)}-turn"):
            yield


def topology_unit(isolation: str, path: str) -> str:
    """What a shared topology is one of: a module's file, or the session."""
    return "session" if isolation == "session" else f"module:{path}"


__all__ = ["SharedTopologies", "shared_key", "topology_unit"]
