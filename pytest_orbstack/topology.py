"""Topologies: machines in pyinfra groups, deployed as one inventory.

``@pytest.mark.orbstack(inventory={"lb": 1, "web": 2}, deploy="site.py", group_data={...})``
describes a :class:`TopologySpec` (validated by :func:`build_topology`); the ``orb_inventory``
fixture gives the :class:`OrbInventory` made from it: every machine a fresh clone of its base
(drawn from the supply like any machine), then the deploy run ONCE across all of them, as
``pyinfra inventory.py site.py`` runs it (:func:`~pytest_orbstack.deploy.runner.run_deploy`
with an inventory).  ``orb_deploy(target, inventory={...})`` makes an :class:`OrbInventory` of
machines a test already has (:func:`inventory_of`).

Every host carries the data :data:`~pytest_orbstack.deploy.inventory_file.HOST_KEYS`:
``orb_name`` (the machine), ``orb_fqdn`` (``NAME.orb.local``) and ``orb_ip`` (its IPv4
address), so a deploy reaches other hosts through ``inventory.get_group("web")``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orbstack.deploy.inventory_file import check_group_name, write_inventory_file
from pytest_orbstack.deploy.runner import Inventory, make_inventory, run_deploy
from pytest_orbstack.errors import ConfigError
from pytest_orbstack.spec import (
    ISOLATIONS,
    MachineSpec,
    build_spec,
)

if TYPE_CHECKING:
    from pytest_orbstack.deploy.results import DeployResult
    from pytest_orbstack.deploy.targets import DeployTarget
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.report import Recorder

#: Marker arguments that go with ``inventory=`` (machine arguments are the groups' defaults).
TOPOLOGY_KEYS = (
    "inventory",
    "group_data",
    "deploy",
    "deploy_from",
    "deploy_data",
    "deploy_config",
    "isolation",
    "image",
    "arch",
    "user",
    "user_data",
)
#: What a group given as a dict may say: its count and its own machine arguments.
GROUP_KEYS = ("count", "image", "arch", "user", "user_data")
#: More machines than this in one group is a typo, not a test.
MAX_COUNT = 20


@dataclass(frozen=True)
class GroupSpec:
    """One group of a topology: ``count`` machines of ``spec``."""

    name: str
    count: int
    spec: MachineSpec


@dataclass(frozen=True)
class TopologySpec:
    """A validated ``inventory=`` marker: groups, the deploy and its data.  Hashable."""

    groups: tuple[GroupSpec, ...]
    isolation: str
    deploy: str | None = None
    group_data_json: str = "{}"
    deploy_data_json: str = "{}"
    deploy_config_json: str = "{}"
    #: ``deploy_from=``: the revision ``deploy`` (then the extracted file) was taken from.
    deploy_from: str | None = None

    @property
    def group_data(self) -> dict[str, dict[str, Any]]:
        return dict(json.loads(self.group_data_json))

    @property
    def deploy_data(self) -> dict[str, Any]:
        return dict(json.loads(self.deploy_data_json))

    @property
    def deploy_config(self) -> dict[str, Any]:
        return dict(json.loads(self.deploy_config_json))

    def describe(self) -> str:
        groups = ", ".join(f"{g.name}={g.count}" for g in self.groups)
        at = f"@{self.deploy_from}" if self.deploy_from else ""
        deploy = f" deploy={Path(self.deploy).name}{at}" if self.deploy else ""
        return f"inventory({groups}){deploy}"

    def demand(self) -> Iterator[tuple[MachineSpec, str]]:
        """``(machine spec, unit suffix)`` per machine, for the supply's demand count."""
        for group in self.groups:
            for index in range(group.count):
                yield group.spec, f"#{group.name}{index}"


def build_topology(
    values: Mapping[str, Any], *, where: str, base_dir: Path, default_image: str
) -> TopologySpec:
    """Validate marker arguments with ``inventory=`` (:class:`ConfigError` naming ``where``)."""
    unknown = sorted(set(values) - set(TOPOLOGY_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: {', '.join(unknown)} cannot go with inventory=; accepted: "
            f"{', '.join(TOPOLOGY_KEYS)} (image, arch, user and user_data are the groups' "
            f"defaults)"
        )
    inventory = values["inventory"]
    if not isinstance(inventory, Mapping) or not inventory:
        raise ConfigError(
            f"{where}: inventory={inventory!r} must be a non-empty dict of group -> count "
            f"(or -> {{'count': N, 'image': ...}}), e.g. inventory={{'lb': 1, 'web': 2}}"
        )
    isolation = values.get("isolation", "session")
    if isolation not in ISOLATIONS:
        raise ConfigError(
            f"{where}: isolation={isolation!r} must be one of {', '.join(ISOLATIONS)}"
        )
    defaults = {k: values[k] for k in ("image", "arch", "user", "user_data") if k in values}
    groups = tuple(
        _group(name, value, defaults, isolation, where, base_dir, default_image)
        for name, value in inventory.items()
    )
    # The deploy and its data, checked as the single-machine marker checks them (with
    # deploy_from=, the deploy's directory as it was at that revision: an upgrade test).
    deploy_values = {
        k: values[k]
        for k in ("deploy", "deploy_from", "deploy_data", "deploy_config")
        if k in values
    }
    checked = build_spec(deploy_values, where=where, base_dir=base_dir, default_image=default_image)
    group_data = values.get("group_data") or {}
    if not isinstance(group_data, Mapping):
        raise ConfigError(f"{where}: group_data={group_data!r} must be a dict of group -> data")
    if group_data and not checked.deploy:
        raise ConfigError(
            f"{where}: group_data= applies to the marker's deploy=; add deploy= or drop it "
            f"(orb_inventory.deploy() uses the marker's group_data too)"
        )
    make_inventory(
        {g.name: [f"{g.name}{i}" for i in range(g.count)] for g in groups},
        group_data=group_data,
        where=where,
    )
    return TopologySpec(
        groups=groups,
        isolation=str(isolation),
        deploy=checked.deploy,
        group_data_json=json.dumps(group_data, sort_keys=True),
        deploy_data_json=json.dumps(checked.deploy_data, sort_keys=True),
        deploy_config_json=json.dumps(checked.deploy_config, sort_keys=True),
        deploy_from=checked.deploy_from,
    )


def _group(
    name: object,
    value: object,
    defaults: Mapping[str, Any],
    isolation: str,
    where: str,
    base_dir: Path,
    default_image: str,
) -> GroupSpec:
    group = check_group_name(name, where)
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in set(value) - set(GROUP_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: inventory group {group!r}: unknown argument(s) {', '.join(unknown)}; "
                f"a group takes {', '.join(GROUP_KEYS)}"
            )
        if "count" not in value:
            raise ConfigError(f"{where}: inventory group {group!r} needs a count, e.g. 'count': 2")
        count = value["count"]
        machine = {**defaults, **{k: v for k, v in value.items() if k != "count"}}
    else:
        count, machine = value, dict(defaults)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ConfigError(
            f"{where}: inventory group {group!r}: count {count!r} must be a whole number from "
            f"1 to {MAX_COUNT}"
        )
    spec = build_spec(
        {**machine, "isolation": isolation},
        where=f"{where}: inventory group {group!r}",
        base_dir=base_dir,
        default_image=default_image,
    )
    return GroupSpec(group, count, spec)


# -- the inventory a test gets ---------------------------------------------------------------


def host_facts(machine: Machine) -> dict[str, Any]:
    """The host data every host of an inventory carries (:data:`HOST_KEYS`)."""
    return {"orb_name": machine.name, "orb_fqdn": machine.hostname, "orb_ip": machine.ip}


class OrbInventory:
    """Machines in pyinfra groups: ``inv["web"]`` (a list of ``Machine``), ``for m in inv``
    (every machine once, in group order), ``inv.deploy(target, **data)`` (one pyinfra run
    over all of them), ``inv.assert_idempotent(target, **data)``, ``inv.write_inventory(path)``
    (a file for ``pyinfra PATH deploy.py``)."""

    def __init__(
        self,
        groups: Mapping[str, Sequence[Machine]],
        group_data: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        where: str = "",
    ) -> None:
        self._groups = {g: list(ms) for g, ms in groups.items()}
        machines: dict[str, Machine] = {}
        for members in self._groups.values():
            for machine in members:
                machines.setdefault(machine.name, machine)
        self._machines = list(machines.values())
        self._facts = {m.name: host_facts(m) for m in self._machines}
        self._inventory = make_inventory(
            {g: [m.name for m in ms] for g, ms in self._groups.items()},
            group_data=group_data,
            hosts=self._facts,
            where=where,
        )

    # -- access ----------------------------------------------------------------------------

    def __getitem__(self, group: str) -> list[Machine]:
        try:
            return list(self._groups[group])
        except KeyError:
            raise KeyError(
                f"no group {group!r} in this inventory (groups: {', '.join(self._groups)})"
            ) from None

    def __iter__(self) -> Iterator[Machine]:
        return iter(list(self._machines))

    def __len__(self) -> int:
        return len(self._machines)

    def __contains__(self, group: object) -> bool:
        return group in self._groups

    def __repr__(self) -> str:
        groups = ", ".join(
            f"{g}=[{', '.join(m.name for m in ms)}]" for g, ms in self._groups.items()
        )
        return f"OrbInventory({groups})"

    @property
    def groups(self) -> dict[str, list[Machine]]:
        return {g: list(ms) for g, ms in self._groups.items()}

    def names(self) -> dict[str, list[str]]:
        """Group -> machine names (the report shows them)."""
        return {g: [m.name for m in ms] for g, ms in self._groups.items()}

    @property
    def inventory(self) -> Inventory:
        """The groups, group data and host data as the deploy runner takes them."""
        return self._inventory

    def host_data(self, machine: Machine | str) -> dict[str, Any]:
        """The host data a deploy sees for ``machine`` (:data:`HOST_KEYS`)."""
        name = machine if isinstance(machine, str) else machine.name
        return dict(self._facts[name])

    # -- deploys ---------------------------------------------------------------------------

    def deploy(
        self,
        target: DeployTarget,
        *,
        sudo: bool = False,
        config: Mapping[str, Any] | None = None,
        **data: Any,
    ) -> dict[str, DeployResult]:
        """Run ``target`` once across the inventory (one pyinfra run, groups and group data as
        the CLI sees an inventory file; keyword arguments as ``--data`` overrides)."""
        return run_deploy(
            self._machines, target, data=data, config=config, sudo=sudo, inventory=self._inventory
        )

    def assert_idempotent(
        self,
        target: DeployTarget,
        *,
        sudo: bool = False,
        config: Mapping[str, Any] | None = None,
        **data: Any,
    ) -> dict[str, DeployResult]:
        """Run ``target`` again across the inventory; fail listing every operation on every
        host that still changed."""
        from pytest_orbstack.deploy.results import IdempotenceError
        from pytest_orbstack.deploy.targets import describe_target

        results = self.deploy(target, sudo=sudo, config=config, **data)
        changed = {name: r for name, r in results.items() if r.changed}
        if changed:
            raise IdempotenceError(changed, describe_target(target))
        return results

    def write_inventory(self, path: str | os.PathLike[str]) -> Path:
        """Write a pyinfra inventory file of these machines (``@orb/NAME`` hosts in their
        groups, group and host data): ``pyinfra PATH deploy.py -y`` deploys them."""
        return write_inventory_file(
            path, self._inventory.file_groups(self._machines), self._inventory.group_data
        )


def inventory_of(
    groups: Mapping[str, Sequence[Machine]],
    group_data: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    where: str = "",
) -> OrbInventory:
    """An :class:`OrbInventory` of machines a test has (``orb_deploy(..., inventory=...)``)."""
    if not isinstance(groups, Mapping):
        raise ConfigError(
            f"{where or 'orb_deploy'}: inventory= must be a dict of group -> machines"
        )
    from pytest_orbstack.machine import Machine

    for group, members in groups.items():
        if isinstance(members, Machine) or not all(isinstance(m, Machine) for m in members):
            raise ConfigError(
                f"{where or 'orb_deploy'}: inventory group {group!r} must be a list of machines"
            )
    return OrbInventory(groups, group_data, where=where)


def demand_units(topology: TopologySpec, unit: str | None) -> list[tuple[MachineSpec, str]]:
    """``(spec, unit)`` of fresh-machine demand: one unit per machine of the topology, for the
    test or module ``unit`` (``None``: a session topology, made when first asked for)."""
    if unit is None:
        return []
    return [(spec, f"{unit}{suffix}") for spec, suffix in topology.demand()]


def make_topology(
    topology: TopologySpec,
    take: Callable[[MachineSpec], Machine],
    *,
    where: str = "",
    recorder: Recorder | None = None,
) -> OrbInventory:
    """The machines of ``topology`` (``take`` gives one fresh machine of a spec; called side by
    side), then its deploy, once, across all of them (recorded as every machine's ``deploy``
    phase: one event naming them all, each machine an equal share of its time).  A failure to
    take a machine raises after every other take settled: ``take``'s caller answers for
    releasing what it gave."""
    wanted = [(group, spec) for group in topology.groups for spec in [group.spec] * group.count]
    with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="orbstack-topo") as ex:
        futures = [ex.submit(take, spec) for _, spec in wanted]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]
    groups: dict[str, list[Machine]] = {}
    for (group, _), future in zip(wanted, futures, strict=True):
        groups.setdefault(group.name, []).append(future.result())
    inventory = OrbInventory(groups, topology.group_data, where=where)
    if topology.deploy:
        names = [m.name for m in inventory]
        phase = recorder.shared_phase(names, "deploy") if recorder is not None else nullcontext()
        with phase:
            run_deploy(
                list(inventory),
                topology.deploy,
                data=topology.deploy_data,
                config=topology.deploy_config,
                inventory=inventory.inventory,
            )
    return inventory


__all__ = [
    "GROUP_KEYS",
    "TOPOLOGY_KEYS",
    "GroupSpec",
    "OrbInventory",
    "TopologySpec",
    "build_topology",
    "demand_units",
    "host_facts",
    "inventory_of",
    "make_topology",
]
