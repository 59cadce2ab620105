"""Machine lifecycle: create / clone / start / ready / delete, templates, keep and reuse policy.

:class:`MachineManager` is one per pytest process.  It knows nothing of pytest hooks: the plugin
hands it specs and tells it when scopes end.  Every machine is written to the
:class:`~pytest_orbstack.registry.Registry` *before* it is created, so a crash at any point
leaves a record the reaper (or the watchdog) can act on, and nothing else is ever deleted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_orbstack.coordination import SharedDir
from pytest_orbstack.errors import (
    MachineExistsError,
    MachineNotFoundError,
    OrbstackError,
    PermanentError,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import MachineInfo, Orbctl
from pytest_orbstack.registry import Owner, Record, Registry
from pytest_orbstack.report import Recorder
from pytest_orbstack.retry import (
    RetryPolicy,
    clone_machine,
    create_machine,
    delete_machines,
    start_machine,
    stop_machine,
    wait_for_state,
)
from pytest_orbstack.spec import MachineSpec, machine_name, slugify

log = logging.getLogger("pytest_orbstack")

KEEP_POLICIES = ("never", "on-failure", "always")


class ProvisionError(OrbstackError):
    """A machine could not be made ready (its cause is chained and quoted)."""


@dataclass(frozen=True)
class Settings:
    """Resolved configuration (see ``plugin.py`` for where each value comes from)."""

    executable: str
    backend: str = "orbctl"
    default_image: str = "debian:bookworm"
    keep: str = "never"
    reuse: bool = False
    timeout: float | None = None
    retries: int = 4
    max_creates: int = 0
    pool_size: int = 0
    report_path: Path | None = None
    state_dir: Path = Path(".")
    registry_key: str = ""

    def policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retries + 1)


@dataclass(frozen=True)
class RunContext:
    """Who we are in this run: run id, xdist worker id, owner process, shared directory."""

    run_id: str
    worker: str  # "gw0", ... or "main"
    owner: Owner
    shared: SharedDir

    @property
    def is_worker(self) -> bool:
        return self.worker != "main"


@dataclass
class _Counter:
    n: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n


class MachineManager:
    """Makes, hands out and removes machines for one pytest process."""

    def __init__(
        self,
        client: Orbctl,
        settings: Settings,
        run: RunContext,
        registry: Registry,
        recorder: Recorder | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.run = run
        self.registry = registry
        self.recorder = recorder or Recorder()
        self.policy = settings.policy()
        self._counter = _Counter()
        self._owned: dict[str, Machine] = {}  # fresh machines this process must remove
        self._session: dict[str, Machine] = {}
        self._clone_supported: bool | None = None
        #: Called with one-line progress messages for slow steps (the plugin shows them with -v).
        self.progress: Callable[[str], None] | None = None
        self._fingerprints: dict[str, str] = {}

    def sibling(self) -> MachineManager:
        """A manager for background work: same run, registry and recorder, its own client (so
        its calls can be aborted without touching the foreground's)."""
        other = MachineManager(
            self.client.copy(), self.settings, self.run, self.registry, self.recorder
        )
        other._fingerprints = self._fingerprints
        return other

    # -- public API ------------------------------------------------------------------------

    def fresh(self, spec: MachineSpec, *, kind: str, label: str = "") -> Machine:
        """A new machine for one test, module or factory call (cloned from a template when the
        spec has a deploy and clone is available)."""
        name = machine_name(
            self.run.run_id, self.run.worker, label or kind[0], str(self._counter.next())
        )
        if spec.deploy and self._clone_supported is not False:
            try:
                source = self.clone_source(spec)
                machine = self._clone_ready(source, name, spec, kind)
            except _CloneUnsupported:
                self._clone_supported = False
                machine = self._create_ready(name, spec, kind, provision=True)
        else:
            machine = self._create_ready(name, spec, kind, provision=bool(spec.deploy))
        self._owned[name] = machine
        return machine

    def session(self, spec: MachineSpec) -> Machine:
        """The one machine of ``spec`` for the whole run, shared by all xdist workers."""
        if self.settings.reuse:
            key = f"reuse-{spec.slot()}"
        else:
            key = f"session-{spec.content_hash(self.fingerprint(spec))[:12]}"
        cached = self._session.get(key)
        if cached is not None:
            return cached

        def make() -> dict[str, Any]:
            if self.settings.reuse:
                name = self._reusable(spec)
            else:
                name = spec.name or machine_name(self.run.run_id, "s", key.split("-", 1)[1])
                self._create_ready(name, spec, "session", provision=bool(spec.deploy))
            return {
                "name": name,
                "kind": "reuse" if self.settings.reuse else "session",
                "image": spec.image,
            }

        handle, _ = self.run.shared.get_or_make(key, make)
        if "error" in handle:
            raise ProvisionError(f"session machine for {spec.describe()} failed: {handle['error']}")
        machine = self.machine(handle["name"], spec)
        self.recorder.machine(machine.name, spec.image, "session", handle["kind"])
        self._session[key] = machine
        return machine

    def template(self, spec: MachineSpec) -> str:
        """The name of the provisioned template machine for ``spec``, made once per run (or
        once across runs with reuse), keyed by a hash of everything that shapes it."""
        digest = spec.content_hash(self.fingerprint(spec))[:12]
        if self.settings.reuse:
            name = machine_name("tpl", spec.slot(), digest[:6])
        else:
            name = machine_name(self.run.run_id, "tpl", digest)

        def make() -> dict[str, Any]:
            if self.settings.reuse and self._adopt(name, spec, digest, "template"):
                return {"name": name, "kind": "template"}
            if self.settings.reuse:
                self._prune_stale(spec, "template", keep=name)
            self._create_ready(name, spec, "template", provision=True, content=digest)
            with self.recorder.phase(name, "stop"):
                stop_machine(self.client, self.policy, name)
            return {"name": name, "kind": "template"}

        handle, _ = self.run.shared.get_or_make(f"template-{digest}", make)
        if "error" in handle:
            raise ProvisionError(f"template for {spec.describe()} failed: {handle['error']}")
        return str(handle["name"])

    def clone_source(self, spec: MachineSpec) -> str:
        """What fresh machines of ``spec`` are cloned from.

        A single process clones the template itself.  Under xdist each worker first clones the
        template once into its own stopped *replica* and clones from that: OrbStack holds a
        source during a clone, so clones of one source take turns, and one source per worker
        keeps the workers from queueing behind each other.
        """
        template = self.template(spec)
        if not self.run.is_worker:
            return template
        digest = template.rsplit("-", 1)[-1]

        def make() -> dict[str, Any]:
            name = machine_name(self.run.run_id, self.run.worker, "rep", digest)
            with self._making(name, spec, "replica"), self.recorder.phase(name, "clone"):
                self._clone(template, name)
            return {"name": name}

        handle, _ = self.run.shared.get_or_make(f"replica-{digest}-{self.run.worker}", make)
        if "error" in handle:
            raise ProvisionError(
                f"template replica for {spec.describe()} failed: {handle['error']}"
            )
        return str(handle["name"])

    def _clone(self, source: str, name: str) -> MachineInfo:
        # OrbStack holds the source during a clone: concurrent clones of one source fail with
        # "operations are in progress: clone".  Take turns, run-wide (per call, not per retry).
        guard = self.run.shared.lock(f"clone-{source}")
        try:
            return clone_machine(self.client, self.policy, source, name, guard=guard)
        except PermanentError as exc:
            if 'unknown command "clone"' in exc.stderr:
                raise _CloneUnsupported() from exc
            raise

    def release(self, machine: Machine, *, keep: bool = False) -> None:
        """End of a fresh machine's scope: delete it, or keep it (and say so)."""
        self._owned.pop(machine.name, None)
        if keep:
            self.registry.update(machine.name, kept=True, state="kept")
            self.recorder.outcome(machine.name, "kept")
            return
        self._delete([machine.name])

    def delete_now(self, names: list[str], outcome: str = "deleted") -> None:
        """Delete machines this run made, in one ``delete -f`` call, and forget them."""
        self._delete(names, outcome)

    def forget_owned(self, name: str) -> None:
        """Someone else (the background supply) now answers for deleting ``name``."""
        self._owned.pop(name, None)

    def adopt_fresh(self, machine: Machine) -> None:
        """This process now answers for deleting ``machine`` (claimed from the pool)."""
        self._owned[machine.name] = machine

    def machine(self, name: str, spec: MachineSpec | None) -> Machine:
        return Machine(name=name, client=self.client, spec=spec)

    def fingerprint(self, spec: MachineSpec) -> str | None:
        if not spec.deploy:
            return None
        deploy = spec.deploy
        # The deploy's data and config are part of what it does (and of the template hash).
        ident = "\0".join((deploy, spec.deploy_data_json or "", spec.deploy_config_json or ""))
        fp = self._fingerprints.get(ident)
        if fp is None:
            from pytest_orbstack.deploy.fingerprint import deploy_fingerprint

            # Once per run, shared by every process: all workers key the same template even if
            # files beside the deploy change while the run goes on.
            key = "fingerprint-" + hashlib.sha256(ident.encode()).hexdigest()[:16]
            data, config = spec.deploy_data, spec.deploy_config
            handle, _ = self.run.shared.get_or_make(
                key, lambda: {"fingerprint": deploy_fingerprint(deploy, data=data, config=config)}
            )
            if "error" in handle:
                raise ProvisionError(f"cannot fingerprint deploy {deploy}: {handle['error']}")
            fp = self._fingerprints[ident] = str(handle["fingerprint"])
        return fp

    def finish_process(self) -> None:
        """This process is done: remove the fresh machines it still holds."""
        leftovers = list(self._owned)
        self._owned.clear()
        if leftovers:
            self._delete(leftovers)

    def finish_run(self, *, failed: Collection[str] = (), unclaimed: Collection[str] = ()) -> None:
        """The whole run is done (controller / single process): remove this run's session
        machines, templates and leftovers, by the keep policy.

        ``failed`` names machines that served a failing test (kept with ``on-failure``);
        ``unclaimed`` names machines prepared ahead that no test took (reported as such).
        """
        keep = self.settings.keep
        doomed = []
        for rec in self.registry.of_run(self.run.run_id):
            if rec.kept:
                continue
            if rec.persistent and rec.state == "ready":
                self.recorder.outcome(rec.name, "kept for reuse")
                continue
            shared = rec.kind in ("session", "reuse")
            if shared and (keep == "always" or (keep == "on-failure" and rec.name in failed)):
                self.registry.update(rec.name, kept=True, state="kept")
                self.recorder.outcome(rec.name, "kept")
                continue
            doomed.append(rec.name)
        if doomed:
            self._delete(doomed)
        for name in unclaimed:
            self.recorder.machine(name, "?", "function", "pool").outcome = "unused, deleted"

    # -- internals -------------------------------------------------------------------------

    def _register(self, name: str, spec: MachineSpec, kind: str, content: str = "") -> None:
        persistent = self.settings.reuse and kind in ("template", "reuse")
        self.registry.register(
            Record(
                name=name,
                run_id=self.run.run_id,
                kind=kind,
                owner=self.run.owner,
                spec_hash=content,
                slot=spec.slot(),
                persistent=persistent,
            )
        )
        self.recorder.machine(name, spec.image, spec.isolation, kind)

    @contextmanager
    def _making(self, name: str, spec: MachineSpec, kind: str, content: str = "") -> Iterator[None]:
        """Record ``name`` before it exists; on failure remove it (or, if it turned out not to
        be ours, forget it so nothing ever deletes the other machine); on success mark it
        ready."""
        self._register(name, spec, kind, content)
        started = time.monotonic()
        self._say(f"making {kind} machine {name} ({spec.describe()})")
        try:
            yield
        except (MachineExistsError, _CloneUnsupported):
            # Not made by us (an earlier attempt of ours would have been settled by the retry
            # policy), or not made at all.
            self.registry.forget(name)
            raise
        except BaseException:
            self._cleanup_failed(name)
            raise
        self.registry.update(name, state="ready")
        self.recorder.outcome(name, "created")
        self._say(f"{name} ready in {time.monotonic() - started:.1f}s")

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def _create_ready(
        self,
        name: str,
        spec: MachineSpec,
        kind: str,
        *,
        provision: bool,
        content: str = "",
    ) -> Machine:
        with self._making(name, spec, kind, content):
            with (
                self.run.shared.create_slot(self.settings.max_creates),
                self.recorder.phase(name, "create"),
            ):
                info = create_machine(
                    self.client,
                    self.policy,
                    spec.image,
                    name,
                    arch=spec.arch,
                    user=spec.user,
                    user_data=spec.user_data,
                )
            self.registry.update(name, machine_id=info.record.id)
            machine = self.machine(name, spec)
            self._wait_ready(machine)
            if provision and spec.deploy:
                self._provision(machine, spec)
        return machine

    def _clone_ready(self, template: str, name: str, spec: MachineSpec, kind: str) -> Machine:
        with self._making(name, spec, kind):
            with (
                self.run.shared.create_slot(self.settings.max_creates),
                self.recorder.phase(name, "clone"),
            ):
                info = self._clone(template, name)
            self.registry.update(name, machine_id=info.record.id)
            with self.recorder.phase(name, "start"):
                start_machine(self.client, self.policy, name)
            machine = self.machine(name, spec)
            self._wait_ready(machine)
        return machine

    def _wait_ready(self, machine: Machine) -> None:
        """Running, with an IPv4 address, and answering ``true`` (reference section 4)."""
        with self.recorder.phase(machine.name, "ready"):
            info = wait_for_state(
                self.client, machine.name, {"running"}, self.policy, require_ip=True
            )
            if info is None or info.state != "running":
                state = info.state if info else "gone"
                raise ProvisionError(f"machine {machine.name!r} did not become ready ({state})")
            deadline = time.monotonic() + 60
            while True:
                probe = self.client.run(machine.name, ["true"], workdir="", timeout=30)
                if probe.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise ProvisionError(
                        f"machine {machine.name!r} is running but cannot run commands: "
                        f"{probe.stderr.decode(errors='replace').strip()}"
                    )
                time.sleep(0.2)
            if machine.spec is not None and machine.spec.user_data:
                machine.run(["cloud-init", "status", "--wait"], user="root", timeout=600)

    def _provision(self, machine: Machine, spec: MachineSpec) -> None:
        from pytest_orbstack.deploy.runner import run_deploy

        assert spec.deploy is not None
        with self.recorder.phase(machine.name, "deploy"):
            run_deploy([machine], spec.deploy, data=spec.deploy_data, config=spec.deploy_config)

    def _cleanup_failed(self, name: str) -> None:
        """A machine failed half-way: remove it (and its record); never raise over the cause."""
        try:
            self._delete([name], outcome="failed")
        except Exception as exc:  # the original error matters more; the reaper will retry
            log.warning("could not remove failed machine %s: %s", name, exc)

    def _delete(self, names: list[str], outcome: str = "deleted") -> None:
        with _phases(self.recorder, names, "delete"):
            delete_machines(self.client, self.policy, names)
        self.registry.forget(*names)
        for name in names:
            self.recorder.outcome(name, outcome)

    def _adopt(self, name: str, spec: MachineSpec, digest: str, kind: str) -> bool:
        """Reuse ``name`` if our registry created it with the same content hash."""
        rec = self.registry.get(name)
        if rec is None or rec.spec_hash != digest or rec.state != "ready":
            return False
        try:
            info = self.client.info(name)
        except MachineNotFoundError:
            self.registry.forget(name)
            return False
        if kind == "reuse" and info.state != "running":
            start_machine(self.client, self.policy, name)
        self.registry.update(name, run_id=self.run.run_id, owner=self.run.owner)
        stats = self.recorder.machine(name, spec.image, spec.isolation, kind)
        stats.reused = True
        stats.outcome = "reused"
        return True

    def _prune_stale(self, spec: MachineSpec, kind: str, *, keep: str) -> None:
        stale = [r.name for r in self.registry.by_slot(spec.slot(), kind) if r.name != keep]
        if stale:
            log.info("replacing stale %s machine(s): %s", kind, ", ".join(stale))
            self._delete(stale, outcome="replaced")

    def _reusable(self, spec: MachineSpec) -> str:
        digest = spec.content_hash(self.fingerprint(spec))[:12]
        name = spec.name or machine_name("reuse", spec.slot())
        rec = self.registry.get(name)
        if self._adopt(name, spec, digest, "reuse"):
            return name
        if rec is not None:  # ours, but stale (other content) or half-made: replace it
            self._delete([name], outcome="replaced")
        self._create_ready(name, spec, "reuse", provision=bool(spec.deploy), content=digest)
        return name


class _CloneUnsupported(Exception):
    """``orbctl clone`` does not exist (OrbStack before 2.0)."""


class _phases:
    """Time one phase for several machines at once (a batched delete)."""

    def __init__(self, recorder: Recorder, names: list[str], phase: str) -> None:
        self.recorder, self.names, self.phase = recorder, names, phase

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        share = (time.monotonic() - self.started) / max(1, len(self.names))
        for name in self.names:
            stats = self.recorder.machines.get(name)
            if stats is not None:
                stats.phases[self.phase] = stats.phases.get(self.phase, 0.0) + share


#: How long a record of a machine that was being created, but does not exist (yet), is kept:
#: OrbStack goes on creating after its client is killed, so the machine may still appear.
CREATE_GRACE = 900.0


def reap(
    client: Orbctl,
    registry: Registry,
    policy: RetryPolicy,
    *,
    exclude_run: str | None = None,
    grace: float = CREATE_GRACE,
) -> list[str]:
    """Delete the machines of dead owners.  Only names with a registry record are touched.

    A record whose machine is absent is forgotten, unless it was still being created less than
    ``grace`` seconds ago (the create may yet finish: a later pass deletes it then).
    """
    records = registry.reapable(exclude_run=exclude_run)
    if not records:
        return []
    existing = {r.name: r for r in client.list()}
    doomed = []
    for rec in records:
        found = existing.get(rec.name)
        if found is None:
            continue
        if rec.machine_id and found.id and found.id != rec.machine_id:
            log.warning("not reaping %s: its id changed, it is not the machine we made", rec.name)
            continue
        doomed.append(rec.name)
    deleted = delete_machines(client, policy, doomed) if doomed else []
    now = time.time()
    registry.forget(
        *(
            r.name
            for r in records
            if r.name in deleted
            or (r.name not in existing and (r.state != "creating" or now - r.created_at > grace))
        )
    )
    if deleted:
        log.info("reaped %d machine(s) of dead runs: %s", len(deleted), ", ".join(deleted))
    return deleted


def spawn_watchdog(registry: Registry, run: RunContext, client: Orbctl) -> int | None:
    """Start a detached process that reaps this run's machines if its owner dies (SIGKILL).

    It runs in its own process group (Ctrl-C does not reach it) and exits after the owner has
    gone and its leftovers are reaped.
    """
    argv = [
        sys.executable,
        "-m",
        "pytest_orbstack.watchdog",
        str(registry.path),
        run.run_id,
        str(run.owner.pid),
        client.executable,
    ]
    env = {**os.environ, **(client.env or {})}
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(
                sys.executable,
                argv,
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)],
                setpgroup=0,
            )
        finally:
            os.close(devnull)
    except OSError as exc:
        log.warning("could not start the cleanup watchdog: %s", exc)
        return None
    return pid


def label_for(nodeid: str) -> str:
    return slugify(nodeid.rsplit("::", 1)[-1], 16)


__all__ = [
    "KEEP_POLICIES",
    "MachineManager",
    "ProvisionError",
    "RunContext",
    "Settings",
    "label_for",
    "reap",
    "spawn_watchdog",
]
