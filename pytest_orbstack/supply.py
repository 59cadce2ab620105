"""Pipelined machine supply: warm-up after collection, clones prepared ahead of demand, and
deletes off the critical path.

One :class:`Supply` per pytest process owns every background thread (an explicit
``shutdown()`` joins them; nothing is left to die with the interpreter).

* **Demand** is counted once per run from the collected items: how many fresh machines each
  function- or module-isolated spec will need.  It lives in the run's shared directory, so all
  xdist workers draw from one counter: a machine is prepared only after a unit of remaining
  demand was *reserved* for it, so the pool never prepares more machines than tests remain.
* **Pool**: each process keeps up to ``pool_size`` machines per spec in preparation (clone or
  create, start, ready) in the background.  Ready machines are *offered* in the shared directory
  and any worker may *claim* one, so a machine prepared by one worker is not wasted when the
  scheduler hands the remaining tests to another.  Unclaimed machines are deleted at the end.
* **Deletes** are queued and issued in batches (``orbctl delete -f A B C``) by one thread.
* **Errors** in background work reach the test that takes the machine (the original exception,
  after the retry policy has had its go), never a hang: waits are bounded.

Every machine is recorded in the registry before it is created (``MachineManager`` does that),
so Ctrl-C, SIGKILL or faults during background work leave nothing the reaper cannot find.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.files import write_json, write_text
from pytest_orbstack.lifecycle import MachineManager, base_key
from pytest_orbstack.machine import Machine
from pytest_orbstack.policy import (
    AUTO_MAX_DEPTH,
    INITIAL_DEPTH,
    auto_pool_depth,
    bases_worth_skipping,
    claim_wait,
    clone_fan_out,
    machines_in_memory,
    pool_room,
    supply_threads,
)
from pytest_orbstack.spec import MachineSpec
from pytest_orbstack.vocabulary import Role

log = logging.getLogger("pytest_orbstack")

BATCH_WINDOW = 1.0  # seconds a queued delete waits for company (deletes are off the critical path)


def base_use(spec: MachineSpec, count: int | None) -> tuple[str, str | None]:
    """What a need of the plan makes from its base: ``(base key, derived machine)``, the
    derived machine being a template (fresh machines with a deploy), a session machine
    (``count`` is ``None``), or ``None`` for fresh machines cloned from the bare base."""
    if count is not None and not spec.deploy:
        return base_key(spec), None
    kind = "session" if count is None else "template"
    made = (kind, spec.deploy, spec.deploy_data_json, spec.deploy_config_json)
    return base_key(spec), json.dumps(made)


def pool_key(spec: MachineSpec) -> str:
    """The pool a fresh machine of ``spec`` is drawn from (isolation, identity and base)."""
    return f"{spec.isolation[0]}{spec.slot()}-{spec.base_hash()[:6]}"


class SharedPool:
    """Run-wide demand counters and ready machines, in the run's shared directory."""

    def __init__(self, shared: SharedDir) -> None:
        self.shared = shared

    def _dir(self, key: str) -> Path:
        path = self.shared.path / f"pool-{key}"
        path.mkdir(exist_ok=True)
        return path

    def init_demand(self, key: str, total: int) -> None:
        """Set the total once per run (the first process to get here wins)."""
        self.shared.get_or_make(f"demand-{key}-init", lambda: self._write(key, total))

    def _write(self, key: str, remaining: int) -> dict[str, int]:
        write_json(self._dir(key) / "demand.json", {"remaining": remaining})
        return {"total": remaining}

    def reserve(self, key: str, *, ahead: bool = False) -> bool:
        """Take one unit of remaining demand; False when none is left (or none was counted).

        ``ahead`` marks it as a machine being prepared for whoever claims it (counted in
        ``in_flight`` until it is offered or its preparation fails)."""
        with self.shared.lock(f"pool-{key}"):
            data = self._read(key)
            if data is None or data["remaining"] <= 0:
                return False
            data["remaining"] -= 1
            if ahead:
                data["in_flight"] = data.get("in_flight", 0) + 1
            self._store(key, data)
            return True

    def settle(self, key: str) -> None:
        """A machine prepared ahead was offered, or its preparation failed."""
        with self.shared.lock(f"pool-{key}"):
            data = self._read(key)
            if data is not None:
                data["in_flight"] = max(0, data.get("in_flight", 0) - 1)
                self._store(key, data)

    def remaining(self, key: str) -> int:
        """Units of demand nobody has reserved yet."""
        data = self._read(key)
        return int(data["remaining"]) if data else 0

    def in_flight(self, key: str) -> int:
        data = self._read(key)
        return int(data.get("in_flight", 0)) if data else 0

    def _read(self, key: str) -> dict[str, int] | None:
        try:
            data = json.loads((self._dir(key) / "demand.json").read_text())
            return {"remaining": int(data["remaining"]), "in_flight": int(data.get("in_flight", 0))}
        except (OSError, ValueError, KeyError):
            return None

    def _store(self, key: str, data: dict[str, int]) -> None:
        write_json(self._dir(key) / "demand.json", data)

    def offer(self, key: str, name: str) -> None:
        with self.shared.lock(f"pool-{key}"):
            write_text(self._dir(key) / f"{name}.ready", str(time.time()))
            data = self._read(key)
            if data is not None:
                data["in_flight"] = max(0, data.get("in_flight", 0) - 1)
                self._store(key, data)

    def leftovers(self) -> list[str]:
        """Names still offered and never claimed, across every spec (the run's end)."""
        return sorted(p.name[: -len(".ready")] for p in self.shared.path.glob("pool-*/*.ready"))

    def claim(self, key: str, name: str | None = None) -> str | None:
        """Claim the oldest ready machine (or ``name``); None when there is none."""
        with self.shared.lock(f"pool-{key}"):
            if name is not None:
                path = self._dir(key) / f"{name}.ready"
                if not path.exists():
                    return None
                path.unlink()
                return name
            ready = sorted(self._dir(key).glob("*.ready"), key=lambda p: p.stat().st_mtime)
            if not ready:
                return None
            ready[0].unlink()
            return ready[0].name[: -len(".ready")]


@dataclass
class _Prepared:
    spec: MachineSpec
    kind: Role
    future: Future[Machine]


@dataclass
class _Deleter:
    """One thread that deletes released machines in batches.

    At :meth:`close`, the batch still gathering is *not* deleted here: those machines stay in
    the registry and the run's end (:meth:`MachineManager.finish_run`, in the controller after
    every worker closed) deletes them with the run's templates and clone sources, instead of
    each process waiting for a delete of its own on the way out.
    """

    manager: MachineManager
    queue: queue.Queue[str | None] = field(default_factory=queue.Queue)
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def put(self, name: str) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="orbstack-delete")
            self.thread.start()
        self.queue.put(name)

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + BATCH_WINDOW
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = self.queue.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if stop:
                log.debug("left to the run's end: %s", ", ".join(batch))
                break
            try:
                self.manager.delete_now(batch)
            except Exception as exc:  # reported at shutdown; the reaper retries later
                log.warning("background delete of %s failed: %s", batch, exc)
                self.errors.append(f"{', '.join(batch)}: {exc}")

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None


class _Pace:
    """What this process measures for the automatic pool depth: how long a fresh machine takes
    to prepare, and how long a test keeps its worker busy between two machines (exponential
    moving averages).

    The second is measured from handing a machine out to the next request, so time spent
    *waiting* for a machine never counts as test time: a starved pool would otherwise measure
    its own slowness as the tests' pace and shrink itself further.
    """

    WEIGHT = 0.3

    def __init__(self) -> None:
        self.prepare: float | None = None
        self.interval: float | None = None
        self._last_handed: float | None = None
        self._lock = threading.Lock()

    def prepared(self, seconds: float) -> None:
        with self._lock:
            self.prepare = self._mix(self.prepare, seconds)

    def taken(self) -> None:
        """A test asks for a machine."""
        now = time.monotonic()
        with self._lock:
            if self._last_handed is not None:
                self.interval = self._mix(self.interval, now - self._last_handed)

    def handed(self) -> None:
        """The test that asked has its machine."""
        with self._lock:
            self._last_handed = time.monotonic()

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.WEIGHT * (new - old)


class Supply:
    """Background supply of fresh machines for one process (see the module docstring).

    ``pool_size``: machines kept in preparation per spec; ``None`` sizes it by Little's law
    from this process's measured preparation and test times
    (:func:`~pytest_orbstack.policy.auto_pool_depth`).  ``workers``: processes drawing on the
    run's pools (xdist workers), for the clone fan-out.
    """

    def __init__(self, manager: MachineManager, pool_size: int | None, workers: int = 1) -> None:
        self.manager = manager
        self.background = manager.sibling()  # its client can be aborted on Ctrl-C
        self.pool_size = pool_size
        self.pool = SharedPool(manager.run.shared)
        self.pace = _Pace()
        self.memory_cap = machines_in_memory(psutil.virtual_memory().available, workers)
        most = pool_size if pool_size is not None else AUTO_MAX_DEPTH
        self._preparers = workers * (pool_size if pool_size is not None else INITIAL_DEPTH)
        self._executor = ThreadPoolExecutor(
            max_workers=supply_threads(most), thread_name_prefix="orbstack-supply"
        )
        self._lock = threading.Lock()
        self._prepared: dict[str, list[_Prepared]] = {}  # in preparation, by spec key
        self._made: dict[str, tuple[str, MachineSpec]] = {}  # pooled names -> (key, spec)
        self._warm: list[Future[Any]] = []
        self._deleter = _Deleter(manager)
        self._closed = False

    # -- warm-up -------------------------------------------------------------------------

    def plan(
        self, needs: Iterable[tuple[MachineSpec, int | None]], *, open_ended: bool = False
    ) -> None:
        """After collection, in the order the tests will ask: ``(spec, count)`` for fresh
        machines (count demand, start the pool, or at least the base/template), ``(spec,
        None)`` for a session machine (start making it).  ``open_ended``: factory fixtures are
        in use (machines of any spec may be asked for later)."""
        needs = list(needs)
        demand = sum(count or 0 for _, count in needs)
        fan_out = clone_fan_out(self._preparers, demand)
        self.manager.fan_out = self.background.fan_out = fan_out
        self.manager.skipped_bases.update(
            bases_worth_skipping(
                (base_use(spec, count) for spec, count in needs if count != 0),
                reuse=self.manager.settings.reuse,
                open_ended=open_ended,
            )
        )
        for spec, count in needs:
            if count is None:
                self._warm.append(self._executor.submit(self._quiet, self.background.session, spec))
                continue
            if count <= 0:
                continue
            self.pool.init_demand(pool_key(spec), count)
            if self.pool_size != 0:
                self._refill(spec, "function" if spec.isolation == "function" else "module")
            else:
                origin = self.background.template if spec.deploy else self.background.base
                self._warm.append(self._executor.submit(self._quiet, origin, spec))

    @staticmethod
    def _quiet(fn: Callable[[MachineSpec], object], spec: MachineSpec) -> object:
        # Errors surface when the foreground asks for the same machine (the shared handle
        # records them); here they are only logged.
        try:
            return fn(spec)
        except Exception as exc:
            log.info("warm-up of %s failed: %s", spec.describe(), exc)
            return None

    # -- taking and releasing ------------------------------------------------------------

    def take(self, spec: MachineSpec, kind: Role, label: str) -> Machine:
        """A ready fresh machine for ``spec``: a pooled one if any is ready or on its way
        (prepared by any worker), else one made now."""
        self.pace.taken()
        try:
            return self._take(spec, kind, label)
        finally:
            self.pace.handed()

    def _take(self, spec: MachineSpec, kind: Role, label: str) -> Machine:
        key = pool_key(spec)
        if self.pool_size != 0 and not self._closed:
            machine = self._from_pool(spec, key)
            if machine is not None:
                self._refill(spec, kind)
                return machine
        else:
            self.pool.reserve(key)  # count this one against the remaining demand
        started = time.monotonic()
        machine = self.manager.fresh(spec, kind=kind, label=label)
        self.pace.prepared(time.monotonic() - started)
        if self.pool_size != 0:
            self._refill(spec, kind)
        return machine

    def depth(self, key: str) -> int:
        """How many machines of pool ``key`` this process keeps in preparation now."""
        if self.pool_size is not None:
            return self.pool_size
        if self.pace.prepare is None or self.pace.interval is None:
            return INITIAL_DEPTH  # nothing measured yet
        return auto_pool_depth(
            self.pace.prepare,
            self.pace.interval,
            remaining=self.pool.remaining(key) + self.pool.in_flight(key),
            max_creates=self.manager.settings.max_creates,
            memory_cap=min(self.memory_cap, AUTO_MAX_DEPTH),
        )

    def _from_pool(self, spec: MachineSpec, key: str) -> Machine | None:
        """Claim a prepared machine, waiting for ones in preparation.  ``None`` means: make
        one now (a unit of demand has then been reserved for it, if any was left)."""
        limit = time.monotonic() + claim_wait(self.manager.policy.deadline)
        while time.monotonic() < limit:
            name = self.pool.claim(key)
            if name is not None:
                return self._adopt(name, spec)
            with self._lock:
                mine = self._prepared.get(key, [])
                pending = [p for p in mine if not p.future.done()]
                failed = [p for p in mine if p.future.done() and p.future.exception()]
                if failed:
                    mine.remove(failed[0])
            if failed:
                raise failed[0].future.exception()  # type: ignore[misc]
            if pending:
                wait([p.future for p in pending], timeout=0.5, return_when=FIRST_COMPLETED)
                continue
            if self.pool.reserve(key):
                return None  # nothing on its way: make it now
            if self.pool.in_flight(key) == 0:
                # nothing on its way any more; one may have been offered since we looked
                name = self.pool.claim(key)
                return self._adopt(name, spec) if name is not None else None
            time.sleep(0.1)  # another worker is preparing one for whoever claims it
        return None

    def _adopt(self, name: str, spec: MachineSpec) -> Machine:
        with self._lock:
            self._made.pop(name, None)
        machine = self.manager.machine(name, spec)
        self.manager.adopt_fresh(machine)
        # another worker may have prepared it: make sure this process reports on it too
        self.manager.recorder.machine(name, spec.image, spec.isolation, spec.isolation)
        return machine

    def release(self, machine: Machine, *, keep: bool = False) -> None:
        if keep or self._closed:
            self.manager.release(machine, keep=keep)
            return
        self.manager.forget_owned(machine.name)
        self._deleter.put(machine.name)

    # -- background preparation ----------------------------------------------------------

    def _refill(self, spec: MachineSpec, kind: Role) -> None:
        key = pool_key(spec)
        with self._lock:
            prepared = self._prepared.setdefault(key, [])
            prepared[:] = [p for p in prepared if not p.future.done() or p.future.exception()]
            in_flight = sum(1 for p in prepared if not p.future.done())
            room = pool_room(self.depth(key), in_flight=in_flight, ready=self._ready_here(key))
            for _ in range(room):
                if self._closed or not self.pool.reserve(key, ahead=True):
                    break
                future = self._executor.submit(self._prepare, spec, kind, key)
                prepared.append(_Prepared(spec, kind, future))

    def _ready_here(self, key: str) -> int:
        return sum(1 for k, _ in self._made.values() if k == key)

    def _prepare(self, spec: MachineSpec, kind: Role, key: str) -> Machine:
        started = time.monotonic()
        try:
            machine = self.background.fresh(spec, kind=kind, label="pool")
        except BaseException:
            self.pool.settle(key)
            raise
        self.pace.prepared(time.monotonic() - started)
        self.background.forget_owned(machine.name)  # the supply answers for it until claimed
        with self._lock:
            self._made[machine.name] = (key, spec)
        self.pool.offer(key, machine.name)
        return machine

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self, *, interrupted: bool = False) -> list[str]:
        """Join all background work.  Returns errors.

        Pooled machines nobody claimed (other workers may still claim them) and released
        machines whose delete had not been issued yet are left to the run's end, which deletes
        them with the run's templates (:meth:`MachineManager.finish_run`; they are in the
        registry).  ``interrupted`` (Ctrl-C): kill background ``orbctl`` calls in
        flight instead of waiting them out; what they leave is recorded in the registry and
        removed by the run's own cleanup, or by the watchdog.
        """
        self._closed = True
        with self._lock:
            futures = [p.future for ps in self._prepared.values() for p in ps]
        for future in futures:
            future.cancel()
        if interrupted:
            self.background.client.abort()
        pending: list[Future[Any]] = [*futures, *self._warm]
        wait(pending)
        with self._lock:
            self._made.clear()
        self._deleter.close()
        self._executor.shutdown(wait=True)
        return list(self._deleter.errors)


__all__ = ["SharedPool", "Supply", "pool_key"]
