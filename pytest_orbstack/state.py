"""The plugin's per-process state: :class:`OrbState`, the composition root.

One per ``pytest.Config`` (pytest's ``Cache`` plays this part for the cache provider): the
resolved settings, the run's identity (:func:`run_context`), the recorder, and - built on first
use - the machine manager, the background supply and the cleanup watchdog.  Hooks and fixtures
in :mod:`pytest_orbstack.plugin` call its methods; nothing here is a hook.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import options
from pytest_orbstack.cleanup import reap, spawn_watchdog
from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.deploy.results import DeployResult
from pytest_orbstack.errors import ConfigError
from pytest_orbstack.lifecycle import MachineManager
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.registry import Owner, Registry
from pytest_orbstack.report import DeployStats, Recorder, write_json, write_timeline
from pytest_orbstack.retry import RetryPolicy
from pytest_orbstack.settings import RunContext, Settings
from pytest_orbstack.spec import MachineSpec, build_spec, kwargs_text, new_run_id
from pytest_orbstack.supply import SharedPool, Supply
from pytest_orbstack.topology import TopologySpec, build_topology

log = logging.getLogger("pytest_orbstack")

item_spec_key = pytest.StashKey[MachineSpec]()
item_topology_key = pytest.StashKey[TopologySpec | None]()


def will_run(item: pytest.Item) -> bool:
    """Whether the test body may run, as far as is known at collection: not when a ``skip``
    mark, a ``skipif`` whose condition is already true or an ``xfail(run=False)`` (without
    ``--runxfail``) stops it.  pytest's own evaluation of the marks decides, so the answer is
    the one pytest gives at setup; a condition that cannot be evaluated counts as "may run"
    (pytest reports it when the test runs)."""
    from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

    try:
        if evaluate_skip_marks(item) is not None:
            return False
        xfail = evaluate_xfail_marks(item)
    except (Exception, pytest.fail.Exception):
        return True
    return xfail is None or xfail.run or bool(item.config.option.runxfail)


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
    current_test: str | None = None
    #: Systemd units the deploys run on each machine (by name) touched.
    touched_units: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recorder.worker = self.run.worker  # events say which process did what

    @property
    def registry(self) -> Registry:
        path = self.settings.state_dir / f"registry-{self.settings.registry_key}.json"
        return Registry(path)

    def unavailable(self) -> str | None:
        if not self._probed:
            self._unavailable = options.probe(
                self.settings,
                lock=self.run.shared.lock("orbstack-start"),
                started=self.recorder.orbstack_started,
            )
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

    def topology_for(self, item: pytest.Item) -> TopologySpec | None:
        """The topology of ``item``'s marker (``inventory=``), or ``None``."""
        if item_topology_key not in item.stash:
            item.stash[item_topology_key] = marker_topology(item, self.settings)
        return item.stash[item_topology_key]

    def check_item(self, item: pytest.Item, fixtures: Collection[str]) -> None:
        """Collection: the item's marker fits the fixtures it uses (:class:`ConfigError`)."""
        topology = self.topology_for(item)
        if topology is None:
            if "orb_inventory" in fixtures:
                raise ConfigError(
                    f"{item.nodeid}: orb_inventory needs a topology: add "
                    f"@pytest.mark.orbstack(inventory={{'web': 2}}, deploy=...)"
                )
            self.spec_for(item)
            return
        single = sorted({"orb_vm", "orb_host"} & set(fixtures))
        if single:
            raise ConfigError(
                f"{item.nodeid}: uses {', '.join(single)} but its marker has inventory=: the "
                f"machines are orb_inventory's (orb_inventory['web'][0], ...)"
            )

    def deployed_in_test(self, result: DeployResult) -> None:
        """A deploy ran on a machine a test was given: its time is the running test's, and
        the units it touched are the first a failure report shows the journal of."""
        from pytest_orbstack.diagnostics import units_touched

        self.touched_units.setdefault(result.machine, set()).update(units_touched([result]))
        if self.current_test is None:
            return  # provisioning by the plugin itself: a machine's lifecycle phase
        self.recorder.deployed(
            self.current_test,
            DeployStats(
                machine=result.machine,
                target=result.target,
                seconds=round(result.duration, 3),
                ok=result.ok,
                changed=result.changed,
            ),
        )

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
        self.recorder.run_finished = time.time()
        extra = {"run_id": self.run.run_id, "backend": self.settings.backend}
        if self.settings.report_path is not None:
            write_json(self.settings.report_path, self.recorder, extra)
        if self.settings.timeline_path is not None:
            write_timeline(self.settings.timeline_path, self.recorder, extra)

    def reap_dead_runs(self) -> list[str]:
        """Start-up reaper: delete machines of earlier runs whose owner died."""
        registry = self.registry
        if not self.settings.executable or not registry.reapable(exclude_run=self.run.run_id):
            return []
        client = Orbctl(self.settings.executable, timeout=self.settings.timeout)
        policy = RetryPolicy.for_retries(self.settings.retries)
        return reap(client, registry, policy, exclude_run=self.run.run_id)


def run_context(config: pytest.Config) -> RunContext:
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


def marker_values(item: pytest.Item) -> dict[str, Any]:
    """The arguments of ``item``'s ``orbstack`` markers (closest wins, key by key)."""
    values: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("orbstack"))):
        if mark.args:
            raise ConfigError(
                f"{item.nodeid}: @pytest.mark.orbstack takes keyword arguments only "
                f"(got positional {mark.args!r}); write image={mark.args[0]!r}"
            )
        values.update(mark.kwargs)
    return values


def marker_spec(item: pytest.Item, settings: Settings) -> MachineSpec:
    """The spec of ``item``'s ``orbstack`` markers (closest wins, key by key)."""
    values = marker_values(item)
    where = f"{item.nodeid}: @pytest.mark.orbstack({kwargs_text(values)})"
    return build_spec(
        values, where=where, base_dir=item.path.parent, default_image=settings.default_image
    )


def marker_topology(item: pytest.Item, settings: Settings) -> TopologySpec | None:
    """The topology of ``item``'s markers, or ``None`` without ``inventory=``."""
    values = marker_values(item)
    if "inventory" not in values:
        return None
    where = f"{item.nodeid}: @pytest.mark.orbstack({kwargs_text(values)})"
    return build_topology(
        values, where=where, base_dir=item.path.parent, default_image=settings.default_image
    )


__all__ = ["OrbState", "item_spec_key", "marker_spec", "run_context"]
