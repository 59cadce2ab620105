"""Machine lifecycle: create / clone / start / ready / delete of bases, templates, session and
fresh machines, and reuse across runs.

:class:`MachineManager` is one per pytest process.  It knows nothing of pytest hooks: the plugin
hands it specs and tells it when scopes end; what to keep is decided by
:mod:`pytest_orbstack.policy`.  How machines are made:

* a **base** per (image, arch, user, user-data) is the one ``create`` (OrbStack downloads the
  image on every create); it is generalized (no machine-id, SSH host keys or random seed to
  share) and stopped;
* a **template** per spec with a deploy is a clone of the base, provisioned, generalized and
  stopped; session machines are clones of the base (provisioned when they have a deploy);
* every **fresh** machine is a copy-on-write clone of its template or base, started and checked
  once (:func:`pytest_orbstack.readiness.check_ready`); without ``clone`` (OrbStack before 2.0)
  machines are created.

Every machine is written to the :class:`~pytest_orbstack.registry.Registry` *before* it is
created, so a crash at any point leaves a record the reaper (or the watchdog) can act on, and
nothing else is ever deleted (:mod:`pytest_orbstack.cleanup`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pytest_orbstack.cloning import GENERALIZE_SCRIPT, CloneSources
from pytest_orbstack.coordination import MissingIpRecord
from pytest_orbstack.deploy.results import DeployError
from pytest_orbstack.errors import (
    MachineExistsError,
    MachineNotFoundError,
    ProvisionError,
    UnsupportedCommandError,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.orbctl import MachineInfo, Orbctl
from pytest_orbstack.policy import at_run_end, delete_chunks
from pytest_orbstack.readiness import check_ready
from pytest_orbstack.registry import Record, Registry
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
from pytest_orbstack.settings import RunContext, Settings
from pytest_orbstack.spec import MachineSpec, machine_name, slugify
from pytest_orbstack.vocabulary import Role

log = logging.getLogger("pytest_orbstack")


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
        self.policy = RetryPolicy.for_retries(settings.retries, MissingIpRecord(run.shared))
        self._counter = _Counter()
        self._owned: dict[str, Machine] = {}  # fresh machines this process must remove
        self._session: dict[str, Machine] = {}
        self._clone_supported: bool | None = None
        #: How many clones of one origin may run at once (the replicas made to allow it):
        #: set by the supply from the expected number of machines in preparation.
        self.fan_out = 1
        #: Called with one-line progress messages for slow steps (the plugin shows them with -v).
        self.progress: Callable[[str], None] | None = None
        self._fingerprints: dict[str, str] = {}
        #: Keys of bases this run does not make (their one user is created directly instead):
        #: set by the supply's plan (:func:`~pytest_orbstack.policy.bases_worth_skipping`).
        self.skipped_bases: set[str] = set()

    def sibling(self) -> MachineManager:
        """A manager for background work: same run, registry and recorder, its own client (so
        its calls can be aborted without touching the foreground's)."""
        other = MachineManager(
            self.client.copy(), self.settings, self.run, self.registry, self.recorder
        )
        other._fingerprints = self._fingerprints
        other.skipped_bases = self.skipped_bases
        other.fan_out = self.fan_out
        return other

    # -- public API ------------------------------------------------------------------------

    def fresh(self, spec: MachineSpec, *, kind: Role, label: str = "") -> Machine:
        """A new machine for one test, module or factory call: a clone of the spec's template
        (with a deploy) or of its pristine base (without), created only where clone is
        unavailable."""
        name = machine_name(
            self.run.run_id, self.run.worker, label or kind[0], str(self._counter.next())
        )
        if self._clone_supported is not False:
            try:
                origin = self.template(spec) if spec.deploy else self.base(spec)
                machine = self._clone_ready(origin, name, spec, kind)
            except _CloneUnsupported:
                self._clone_supported = False
            else:
                self._owned[name] = machine
                return machine
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
                self._derive(name, spec, "session")
            return {
                "name": name,
                "kind": "reuse" if self.settings.reuse else "session",
                "image": spec.image,
            }

        handle, _ = self.run.shared.get_or_make(key, make)
        if "error" in handle:
            raise ProvisionError(f"session machine for {spec.describe()} failed: {handle['error']}")
        machine = self.machine(handle["name"], spec)
        self.recorder.machine(machine.name, spec.image, "session", handle["kind"], spec.deploy)
        self._session[key] = machine
        return machine

    def base(self, spec: MachineSpec) -> str:
        """The name of the pristine base machine of ``spec``'s image, arch, user and user-data:
        created once per run (once across runs with reuse), generalized and stopped, then only
        ever cloned.  OrbStack's ``create`` downloads the image every time; ``clone`` is a
        copy-on-write snapshot."""
        pristine = spec.pristine()
        digest = base_key(spec)
        if self.settings.reuse:
            name = machine_name("base", pristine.slot(), digest[:6])
        else:
            name = machine_name(self.run.run_id, "base", digest)

        def make() -> dict[str, Any]:
            if self.settings.reuse and self._adopt(name, pristine, digest, "base"):
                return {"name": name}
            if self.settings.reuse:
                self._prune_stale(pristine, "base", keep=name)
            self._create_ready(name, pristine, "base", provision=False, content=digest)
            self._generalize_and_stop(name)
            return {"name": name}

        handle, _ = self.run.shared.get_or_make(f"base-{digest}", make)
        if "error" in handle:
            raise ProvisionError(f"base machine for {spec.describe()} failed: {handle['error']}")
        return str(handle["name"])

    def template(self, spec: MachineSpec) -> str:
        """The name of the provisioned template machine for ``spec``, made once per run (or
        once across runs with reuse), keyed by a hash of everything that shapes it: a clone of
        the base, provisioned, generalized and stopped."""
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
            self._derive(name, spec, "template", content=digest)
            self._generalize_and_stop(name)
            return {"name": name, "kind": "template"}

        handle, _ = self.run.shared.get_or_make(f"template-{digest}", make)
        if "error" in handle:
            raise ProvisionError(f"template for {spec.describe()} failed: {handle['error']}")
        return str(handle["name"])

    def _clone_from(self, origin: str, name: str, spec: MachineSpec) -> MachineInfo | None:
        """Clone ``name`` from ``origin`` or one of its replicas, fanning out.

        OrbStack holds a source during a clone, so clones of one source take turns (run-wide,
        per call: concurrent clones of one source fail with "operations are in progress").
        To keep up to :attr:`fan_out` clones going at once, a clone that had to wait for a
        source first clones one more *source* (while fewer than ``fan_out``): a stopped,
        never-started copy of the origin (a replica), identical to it.  N machines then need
        about log2(N) rounds of clones instead of N turns on one source.
        """
        sources = CloneSources(self.run.shared, origin)
        while True:
            source, lock, waited = sources.acquire()
            try:
                if waited and sources.grow(self.fan_out):
                    replica = machine_name(
                        self.run.run_id, self.run.worker, "rep", str(self._counter.next())
                    )
                    with (
                        self._making(replica, spec, "replica"),
                        self.recorder.phase(replica, "clone"),
                    ):
                        self._clone(source, replica)
                    sources.add(replica)
                    continue  # now clone for the caller, from whichever source is free
                return self._clone(source, name)
            finally:
                lock.release()

    def _clone(self, source: str, name: str) -> MachineInfo | None:
        try:
            return clone_machine(self.client, self.policy, source, name)
        except UnsupportedCommandError as exc:
            raise _CloneUnsupported() from exc

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
        doomed = []
        for rec in self.registry.of_run(self.run.run_id):
            action = at_run_end(
                self.settings.keep,
                kind=rec.kind,
                state=rec.state,
                kept=rec.kept,
                persistent=rec.persistent,
                failed=rec.name in failed,
            )
            if action == "keep for reuse":
                self.recorder.outcome(rec.name, "kept for reuse")
            elif action == "keep":
                self.registry.update(rec.name, kept=True, state="kept")
                self.recorder.outcome(rec.name, "kept")
            elif action == "delete":
                doomed.append(rec.name)
        if doomed:
            self._delete(doomed)
        for name in unclaimed:
            self.recorder.machine(name, "?", "function", "pool").outcome = "unused, deleted"

    # -- internals -------------------------------------------------------------------------

    def _register(self, name: str, spec: MachineSpec, kind: Role, content: str = "") -> None:
        persistent = self.settings.reuse and kind in ("base", "template", "reuse")
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
        self.recorder.machine(name, spec.image, spec.isolation, kind, spec.deploy)

    @contextmanager
    def _making(
        self, name: str, spec: MachineSpec, kind: Role, content: str = ""
    ) -> Iterator[None]:
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
        kind: Role,
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
                    self.client, self.policy, spec.image, name, spec.create_options()
                )
            self.registry.update(name, machine_id=info.record.id)
            machine = self.machine(name, spec)
            self._wait_ready(machine)
            if provision and spec.deploy:
                self._provision(machine, spec)
        return machine

    def _derive(self, name: str, spec: MachineSpec, kind: Role, *, content: str = "") -> Machine:
        """A machine of ``spec`` that is not drawn from a pool (a session, reuse or template
        machine): a clone of the base, provisioned if the spec has a deploy; created where
        clone is unavailable, or where it is the base's only user in this run (the base would
        only add a stop, a clone and a start before it)."""
        if self._clone_supported is not False and base_key(spec) not in self.skipped_bases:
            try:
                base = self.base(spec)
                return self._clone_ready(base, name, spec, kind, provision=True, content=content)
            except _CloneUnsupported:
                self._clone_supported = False
        return self._create_ready(name, spec, kind, provision=bool(spec.deploy), content=content)

    def _clone_ready(
        self,
        origin: str,
        name: str,
        spec: MachineSpec,
        kind: Role,
        *,
        provision: bool = False,
        content: str = "",
    ) -> Machine:
        with self._making(name, spec, kind, content):
            with (
                self.run.shared.create_slot(self.settings.max_creates),
                self.recorder.phase(name, "clone"),
            ):
                info = self._clone_from(origin, name, spec)
            if info is not None:  # inspected after an ambiguous attempt: its id is known
                self.registry.update(name, machine_id=info.record.id)
            self._set_limits(name, spec)
            with self.recorder.phase(name, "start"):
                start_machine(self.client, self.policy, name)
            machine = self.machine(name, spec)
            self._ready(machine)
            if provision and spec.deploy:
                self._provision(machine, spec)
        return machine

    def _set_limits(self, name: str, spec: MachineSpec) -> None:
        """A clone's CPU, memory and disk limits, set explicitly before its first start
        (``config set machine.NAME.*``): OrbStack does not document whether a clone inherits
        them (docs/orbctl-contract.md §16; it does inherit ``isolated``)."""
        for key, value in spec.create_options().machine_config().items():
            # An OrbStack without the key: UnsupportedSettingError (errors.py), a clear message.
            self.client.set_machine_config(name, key, value)

    def _wait_ready(self, machine: Machine) -> None:
        """After ``create``: running (with an address if this orbctl reports addresses), then
        answering commands (docs/orbctl-contract.md §4)."""
        info = wait_for_state(self.client, machine.name, {"running"}, self.policy, require_ip=True)
        if info is None or info.state != "running":
            state = info.state if info else "gone"
            raise ProvisionError(f"machine {machine.name!r} did not become ready ({state})")
        self._ready(machine)

    def _ready(self, machine: Machine) -> None:
        with self.recorder.phase(machine.name, "ready"):
            actual = check_ready(self.client, self.policy, machine)
        stats = self.recorder.machines.get(machine.name)
        if actual is not None and stats is not None:
            stats.actual_image = actual

    def _generalize_and_stop(self, name: str) -> None:
        """Make ``name`` a clean origin for clones (no machine-id, SSH host keys or random seed
        to share; each clone makes its own on first boot, as a fresh create does), then stop
        it: OrbStack clones a stopped machine consistently."""
        call = self.client.run(name, ["sh", "-c", GENERALIZE_SCRIPT], user="root", workdir="")
        if call.returncode != 0:
            raise ProvisionError(
                f"could not prepare {name!r} for cloning: "
                f"{call.stderr.decode(errors='replace').strip()}"
            )
        with self.recorder.phase(name, "stop"):
            stop_machine(self.client, self.policy, name)

    def _provision(self, machine: Machine, spec: MachineSpec) -> None:
        from pytest_orbstack.deploy.runner import run_deploy

        assert spec.deploy is not None
        with self.recorder.phase(machine.name, "deploy"):
            try:
                run_deploy([machine], spec.deploy, data=spec.deploy_data, config=spec.deploy_config)
            except DeployError as exc:
                # The machine is removed next: say what it looked like while it still exists.
                from pytest_orbstack.diagnostics import provision_failure

                details = provision_failure(machine, exc.results.values())
                raise ProvisionError(f"{exc}\n{details}") from exc

    def _cleanup_failed(self, name: str) -> None:
        """A machine failed half-way: remove it (and its record); never raise over the cause."""
        try:
            self._delete([name], outcome="failed")
        except Exception as exc:  # the original error matters more; the reaper will retry
            log.warning("could not remove failed machine %s: %s", name, exc)

    def _delete(self, names: list[str], outcome: str = "deleted") -> None:
        """Delete ``names``: one ``delete -f`` call, or a few side by side for a long list
        (:func:`~pytest_orbstack.policy.delete_chunks`).  What was deleted is forgotten even
        if another call failed; the first failure is raised."""
        chunks = delete_chunks(names)
        errors: list[BaseException] = []

        def delete(chunk: list[str]) -> None:
            try:
                delete_machines(self.client, self.policy, chunk)
            except BaseException as exc:  # raised below, after the others are settled
                errors.append(exc)
                return
            self.registry.forget(*chunk)
            for name in chunk:
                self.recorder.outcome(name, outcome)

        with self.recorder.shared_phase(names, "delete"):
            if len(chunks) <= 1:
                for chunk in chunks:
                    delete(chunk)
            else:
                with ThreadPoolExecutor(len(chunks), thread_name_prefix="orbstack-delete") as ex:
                    list(ex.map(delete, chunks))
        if errors:
            raise errors[0]

    def _adopt(self, name: str, spec: MachineSpec, digest: str, kind: Role) -> bool:
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
        stats = self.recorder.machine(name, spec.image, spec.isolation, kind, spec.deploy)
        stats.reused = True
        stats.outcome = "reused"
        return True

    def _prune_stale(self, spec: MachineSpec, kind: Role, *, keep: str) -> None:
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
        self._derive(name, spec, "reuse", content=digest)
        return name


class _CloneUnsupported(Exception):
    """``orbctl clone`` does not exist (OrbStack before 2.0)."""


def base_key(spec: MachineSpec) -> str:
    """The key of ``spec``'s pristine base (image, arch, user, user-data)."""
    return spec.pristine().base_hash()[:12]


def label_for(nodeid: str) -> str:
    return slugify(nodeid.rsplit("::", 1)[-1], 16)


__all__ = ["MachineManager", "ProvisionError", "label_for"]
