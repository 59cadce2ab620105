"""Run pyinfra deploys against machines: ``run_deploy``, ``assert_idempotent``.

A **deploy file** runs in its own Python process, as ``pyinfra @orb/NAME deploy.py -y`` would
run it (see :mod:`pytest_orbstack.deploy.pyinfra_driver`): pyinfra's global state is not
thread-safe, and a process per deploy lets deploys on different machines run side by side -
a test's deploy never waits for a template being provisioned in the background.  The request
(deploy file, hosts, data, config) goes to the process as a JSON file; the results come back
the same way.  The process's working directory is the deploy file's directory, so
``files.put(src="files/x")``, ``files.template(src="templates/x.j2")`` and ``local.include``
resolve next to the deploy file.

A **callable** (a function that calls pyinfra operations, e.g. a ``@deploy`` function) cannot be
handed to another process, so it runs in this process, one callable at a time;
``state.cwd`` is the directory of the module defining it.

Deploys run as the machine's default user, exactly as over SSH: use ``_sudo=True`` on an
operation, or ``sudo=True`` (pyinfra's ``SUDO`` config) for the whole deploy; host data
``orb_user`` connects as another user of the machine.

Nothing here imports :mod:`pytest_orbstack.machine`: the machines are anything with a name, an
``orbctl`` client and a way to record what ran (:class:`DeployMachine`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pytest_orbstack.deploy.inventory_file import check_group_name, write_inventory_file
from pytest_orbstack.deploy.results import DeployError, DeployResult, IdempotenceError
from pytest_orbstack.deploy.targets import (
    DeployTarget,
    callable_dir,
    check_target,
    current_requester,
    describe_target,
    resolve_deploy_file,
)
from pytest_orbstack.errors import (
    ConfigError,
    DeployProcessError,
)
from pytest_orbstack.orbctl import CompletedCall, Orbctl

log = logging.getLogger("pytest_orbstack")

#: Host data the runner sets itself (a deploy may read them, not pass them).
RESERVED_DATA = ("orb_name", "orb_fqdn", "orb_ip", "orb_client", "orb_orbctl", "orb_env")
#: How often a waiting deploy checks whether its machines' client was aborted (Ctrl-C).
_POLL_SECONDS = 0.2
#: Lines of the deploy process's stderr quoted when it dies without results.
_STDERR_TAIL = 30


@runtime_checkable
class DeployMachine(Protocol):
    """What a deploy needs from a machine (:class:`~pytest_orbstack.machine.Machine` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def client(self) -> Orbctl: ...

    def record(self, argv: list[str], call: CompletedCall, user: str | None) -> object:
        """Keep a command that ran for this machine (failure reports list them)."""
        ...

    def deployed(self, result: DeployResult) -> None:
        """A deploy ran on this machine (the plugin's report counts it for the test)."""
        ...


# -- options ---------------------------------------------------------------------------------


def _check_json(value: object, where: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: key {key!r} is not a string")
            _check_json(item, f"{where}[{key!r}]")
        return
    raise ConfigError(
        f"{where}: {type(value).__name__} value {value!r} cannot be passed to a deploy; use "
        f"str, int, float, bool, None, lists and dicts of them (deploys run in their own process)"
    )


def deploy_options(
    data: Mapping[str, Any] | None,
    config: Mapping[str, Any] | None,
    sudo: bool = False,
    *,
    where: str = "",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validated ``(host data, pyinfra config)`` of a deploy; :class:`ConfigError` naming
    ``where`` (default: the requesting test) and the fix on bad input."""
    if not where:
        requester = current_requester()
        where = requester.label if requester is not None else "deploy"
    host_data = dict(data or {})
    for key in host_data:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: deploy data key {key!r} is not a string")
        if key in RESERVED_DATA:
            raise ConfigError(
                f"{where}: deploy data {key!r} is set by pytest-orbstack and cannot be given; "
                f"use another name (orb_user and orb_start are allowed)"
            )
        _check_json(host_data[key], f"{where}: deploy data {key!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"{where}: deploy config must be a dict of pyinfra Config names")
    pyinfra_config = dict(config or {})
    if pyinfra_config:
        from pytest_orbstack.deploy.pyinfra_driver import known_config_keys

        known = known_config_keys()
        unknown = sorted(str(k) for k in pyinfra_config if k not in known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown pyinfra config {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))} (e.g. {{'SUDO': True}})"
            )
        for key, value in pyinfra_config.items():
            _check_json(value, f"{where}: deploy config {key!r}")
    if not isinstance(sudo, bool):
        raise ConfigError(f"{where}: sudo={sudo!r} must be True or False")
    if sudo:
        pyinfra_config["SUDO"] = True
    return host_data, pyinfra_config


# -- running ---------------------------------------------------------------------------------


def _machine_list(machines: DeployMachine | Iterable[DeployMachine]) -> list[DeployMachine]:
    items = [machines] if isinstance(machines, DeployMachine) else list(machines)
    if not items:
        raise ValueError("run_deploy needs at least one machine")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, DeployMachine):
            raise TypeError(f"run_deploy: {item!r} is not a machine (name, client, record)")
        if item.name in seen:
            raise ValueError(f"machine {item.name!r} given twice")
        seen.add(item.name)
    return items


def _orbctl_settings(client: Orbctl) -> dict[str, Any]:
    return {
        "executable": client.executable,
        "env": client.env,
        "timeout": client.default_timeout,
        "timeouts": dict(client.timeouts),
    }


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_tool(
    argv: list[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """Run a host tool a deploy needs (``git`` for :mod:`~pytest_orbstack.deploy.revisions`):
    an argv list, no shell, no stdin, a timeout; output captured."""
    return subprocess.run(  # noqa: S603 - argv list, no shell
        argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
    )


def _tail(path: Path, lines: int = _STDERR_TAIL) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_file(
    machines: list[DeployMachine],
    deploy_file: Path,
    data: Mapping[str, Any],
    config: Mapping[str, Any],
    inventory: Inventory | None = None,
) -> dict[str, dict[str, Any]]:
    """Run a deploy file in a new deploy process; return its JSON results per machine.

    With an ``inventory`` the process reads it as ``pyinfra inventory.py deploy.py`` would
    (an inventory file written here, ``data`` as ``--data`` overrides)."""
    with tempfile.TemporaryDirectory(prefix="pytest-orbstack-deploy-") as tmp:
        workdir = Path(tmp)
        request: dict[str, Any] = {
            "deploy_file": str(deploy_file),
            "hosts": [
                {
                    "name": m.name,
                    "data": {**data, "orb_name": m.name} if inventory is None else {},
                    "orbctl": _orbctl_settings(m.client),
                }
                for m in machines
            ],
            "config": dict(config),
            "sys_path": [p for p in sys.path if p],
            "result_path": str(workdir / "result.json"),
        }
        if inventory is not None:
            path = write_inventory_file(
                workdir / "inventory.py", inventory.file_groups(machines), inventory.group_data
            )
            request["inventory"] = {"file": str(path), "override_data": dict(data)}
        request_path = workdir / "request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        stdout_path, stderr_path = workdir / "stdout", workdir / "stderr"
        argv = [sys.executable, "-m", "pytest_orbstack.deploy", str(request_path)]
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                argv,
                stdin=subprocess.DEVNULL,  # a sudo password prompt fails instead of hanging
                stdout=out,
                stderr=err,
                cwd=deploy_file.parent,
                start_new_session=True,  # no terminal to prompt on; killed as a group
            )
        try:
            while True:
                try:
                    proc.wait(timeout=_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if any(m.client.aborted for m in machines):
                        _kill(proc)
                        raise DeployProcessError(
                            f"deploy {deploy_file} was aborted (the run is being interrupted)"
                        ) from None
        except BaseException:
            if proc.returncode is None:
                _kill(proc)
            raise
        result_path = workdir / "result.json"
        if proc.returncode != 0 or not result_path.is_file():
            raise DeployProcessError(
                f"the deploy process for {deploy_file} exited {proc.returncode} without "
                f"results:\n{_tail(stderr_path)}"
            )
        payload = json.loads(result_path.read_text(encoding="utf-8"))
        output = _tail(stderr_path, 200)
        if output:
            log.debug("deploy %s: pyinfra output:\n%s", deploy_file, output)
        hosts: dict[str, dict[str, Any]] = payload["hosts"]
        return hosts


def _run_callable(
    machines: list[DeployMachine],
    func: Any,
    data: Mapping[str, Any],
    config: Mapping[str, Any],
    inventory: Inventory | None = None,
) -> dict[str, dict[str, Any]]:
    from pytest_orbstack.deploy.pyinfra_driver import HostSpec, run_callable

    if inventory is None:
        hosts = [
            HostSpec(m.name, {**data, "orb_name": m.name, "orb_client": m.client}) for m in machines
        ]
        return run_callable(hosts, func, base_dir=callable_dir(func), config=config)
    _refuse_group_data_dir(func)
    hosts = [
        HostSpec(m.name, {**inventory.host_data(m.name), "orb_client": m.client}) for m in machines
    ]
    return run_callable(
        hosts,
        func,
        base_dir=callable_dir(func),
        config=config,
        groups={
            g: (list(names), inventory.group_data.get(g, {}))
            for g, names in inventory.groups.items()
        },
        override_data=data,
    )


def _refuse_group_data_dir(func: Any) -> None:
    """A callable runs in the test's process, through pyinfra's API: only the CLI reads
    ``group_data/*.py`` files.  One next to the callable's module would be silently ignored,
    so it is an error that says what to do instead."""
    folder = Path(callable_dir(func)) / "group_data"
    files = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
    if files:
        raise ConfigError(
            f"deploy {describe_target(func)} with an inventory: {folder} ({', '.join(files)}) is "
            f"not read for a callable deploy (pyinfra's CLI reads group_data/ only for a deploy "
            f"file); deploy a file instead, or give the data as group_data={{...}}"
        )


def _record(machine: DeployMachine, description: str, result: DeployResult) -> None:
    argv = ["pyinfra", f"@orb/{machine.name}", description]
    stderr = "" if result.ok else str(DeployError({machine.name: result}, description))
    call = CompletedCall(
        argv, 0 if result.ok else 1, result.summary().encode(), stderr.encode(), result.duration
    )
    machine.record(argv, call, None)
    machine.deployed(result)


@dataclass(frozen=True)
class Inventory:
    """Groups of a multi-host deploy, as ``pyinfra inventory.py deploy.py`` sees them.

    ``groups``: group -> machine names; ``group_data``: group -> data; ``hosts``: machine name
    -> host data (``orb_name``, ``orb_fqdn``, ``orb_ip`` and the like, set by the caller).
    Build it with :func:`make_inventory`, which validates it.
    """

    groups: Mapping[str, tuple[str, ...]]
    group_data: Mapping[str, Mapping[str, Any]]
    hosts: Mapping[str, Mapping[str, Any]]

    def host_data(self, name: str) -> dict[str, Any]:
        return {**self.hosts.get(name, {}), "orb_name": name}

    def file_groups(
        self, machines: Iterable[DeployMachine]
    ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Group -> ``[(name, host data incl. how to reach it)]`` for an inventory file."""
        clients = {m.name: m.client for m in machines}
        return {
            group: [(n, {**self.host_data(n), **_connector_data(clients[n])}) for n in names]
            for group, names in self.groups.items()
        }


def _connector_data(client: Orbctl) -> dict[str, Any]:
    data: dict[str, Any] = {"orb_orbctl": client.executable}
    if client.env:
        data["orb_env"] = dict(client.env)
    return data


def make_inventory(
    groups: Mapping[str, Iterable[str]],
    *,
    group_data: Mapping[str, Mapping[str, Any]] | None = None,
    hosts: Mapping[str, Mapping[str, Any]] | None = None,
    where: str = "",
) -> Inventory:
    """A validated :class:`Inventory` (:class:`ConfigError` naming ``where`` on bad input)."""
    if not where:
        requester = current_requester()
        where = requester.label if requester is not None else "deploy"
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError(f"{where}: inventory must be a non-empty dict of group -> machines")
    checked: dict[str, tuple[str, ...]] = {}
    for group, names in groups.items():
        check_group_name(group, where)
        members = tuple(names)
        if not members:
            raise ConfigError(f"{where}: inventory group {group!r} has no machines")
        checked[group] = members
    data: dict[str, Mapping[str, Any]] = {}
    for group, values in (group_data or {}).items():
        if group not in checked:
            raise ConfigError(
                f"{where}: group_data for {group!r}, which is not a group of the inventory "
                f"({', '.join(checked)})"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: group_data[{group!r}] must be a dict")
        deploy_options(values, None, where=f"{where}: group_data[{group!r}]")
        data[group] = dict(values)
    return Inventory(checked, data, {k: dict(v) for k, v in (hosts or {}).items()})


def run_deploy(
    machines: DeployMachine | Iterable[DeployMachine],
    target: DeployTarget,
    *,
    data: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    sudo: bool = False,
    inventory: Inventory | None = None,
) -> dict[str, DeployResult]:
    """Run ``target`` (deploy file or callable) on ``machines`` in parallel.

    A relative deploy path is resolved against the directory of the requesting test's file (see
    :mod:`pytest_orbstack.deploy.targets`).  ``data`` becomes host data on every machine
    (``host.data.KEY`` in the deploy); ``config`` sets pyinfra ``Config`` attributes (e.g.
    ``{"SUDO": True}``); ``sudo=True`` is ``config={"SUDO": True}``.  Returns machine name ->
    :class:`DeployResult`.  Raises :class:`DeployError` (carrying every result) when an operation
    failed or raised, a machine could not be connected, or the deploy code raised.

    With an ``inventory`` (:func:`make_inventory`) the machines are its hosts, in its groups,
    in ONE pyinfra run as ``pyinfra inventory.py deploy.py`` runs it: group data, each host's
    data, a ``group_data/`` directory next to a deploy file, and ``data`` as overrides (as
    ``pyinfra --data``).
    """
    machine_list = _machine_list(machines)
    check_target(target, "run_deploy")
    host_data, pyinfra_config = deploy_options(data, config, sudo)
    if inventory is not None:
        _check_members(inventory, machine_list)
    description = describe_target(target)
    started = time.monotonic()
    if callable(target):
        raw = _run_callable(machine_list, target, host_data, pyinfra_config, inventory)
    else:
        deploy_file = resolve_deploy_file(target)
        raw = _run_file(machine_list, deploy_file, host_data, pyinfra_config, inventory)
    duration = time.monotonic() - started
    results: dict[str, DeployResult] = {}
    for machine in machine_list:
        entry = raw.get(machine.name, {"error": "the deploy reported no result for this machine"})
        result = DeployResult.from_json(machine.name, entry, duration=duration, target=description)
        results[machine.name] = result
        _record(machine, description, result)
        log.info("deploy %s: %s", description, result.summary())
    if any(not r.ok for r in results.values()):
        raise DeployError(results, description)
    return results


def _check_members(inventory: Inventory, machines: list[DeployMachine]) -> None:
    given = {m.name for m in machines}
    grouped = {n for names in inventory.groups.values() for n in names}
    if grouped != given:
        missing = sorted(grouped - given) or sorted(given - grouped)
        raise ValueError(
            f"the inventory's groups and the machines differ: {', '.join(missing)} (every "
            f"machine must be in a group, every grouped machine given)"
        )


def assert_idempotent(
    machine: DeployMachine,
    target: DeployTarget,
    *,
    data: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    sudo: bool = False,
) -> DeployResult:
    """Run ``target`` once more on ``machine``; fail if any operation still changed something.

    Raises :class:`IdempotenceError` (an ``AssertionError``) listing every operation that changed,
    or :class:`DeployError` if the run failed.  Returns the result of this run.
    """
    result = run_deploy([machine], target, data=data, config=config, sudo=sudo)[machine.name]
    if result.changed:
        raise IdempotenceError({machine.name: result}, describe_target(target))
    return result


__all__ = [
    "RESERVED_DATA",
    "DeployMachine",
    "DeployProcessError",
    "Inventory",
    "assert_idempotent",
    "make_inventory",
    "run_tool",
    "deploy_options",
    "run_deploy",
]
