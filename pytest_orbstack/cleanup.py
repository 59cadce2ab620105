"""No machine left behind: the reaper, the watchdog and the grace rules, in one place.

The promise, top to bottom:

1. **Record before create.** Every machine the plugin makes is written to the
   :class:`~pytest_orbstack.registry.Registry` (owner pid + process start time + host + run id)
   *before* ``orbctl create``/``clone`` runs (``MachineManager._making``), so a crash at any point
   leaves a record.  Nothing without a record is ever deleted; a record whose machine's id
   changed is never acted on (someone else made a machine of that name).
2. **Normal end and Ctrl-C.** The run deletes what it made, by the keep policy
   (:func:`pytest_orbstack.policy.at_run_end`), in ``pytest_sessionfinish``.
3. **SIGKILL or crash of the run.** A detached watchdog (:func:`spawn_watchdog`, started with the
   run's first machine, in its own process group so Ctrl-C does not reach it) waits for the
   owner to die and then reaps the run's machines (:func:`watch`).
4. **Watchdog gone too (reboot, SIGKILL of the group).** The next run's start-up reaper deletes
   machines of owners that are provably dead (:func:`reap`).
5. **Creates that outlive their client.** OrbStack goes on creating a machine after its client
   was killed, so a record of a machine that does not exist *yet* is kept for
   :data:`CREATE_GRACE` seconds: the machine is deleted once it appears.

This module imports only what the watchdog process uses (the orbctl client, the registry and the
retry policy); the watchdog runs as ``python -m pytest_orbstack.cleanup``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.registry import Owner, Registry
from pytest_orbstack.retry import RetryPolicy, delete_machines

if TYPE_CHECKING:
    from pytest_orbstack.settings import RunContext

log = logging.getLogger("pytest_orbstack")

#: How long a record of a machine that was being created, but does not exist (yet), is kept:
#: OrbStack goes on creating after its client is killed, so the machine may still appear.
CREATE_GRACE = 900.0
#: How often the watchdog checks whether its owner is still alive.
WATCH_POLL = 0.5
#: The watchdog's retry policy: patient, since nobody waits for it.
WATCHDOG_POLICY = RetryPolicy(attempts=6, deadline=300)


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
    gone and its leftovers are reaped.  Returns its pid, or ``None`` if it could not start (the
    next run's start-up reaper still cleans up).
    """
    argv = [
        sys.executable,
        "-m",
        __name__,
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


def watch(registry: Registry, run_id: str, owner: Owner | None, client: Orbctl) -> None:
    """The watchdog's work: wait for ``owner`` to die, then reap ``run_id``'s machines.

    It keeps going while the run has records left: a create the dead run started may still be
    finishing (OrbStack does not stop when its client dies); its machine is deleted once it
    appears, or its record dropped after the grace period.
    """
    if owner is not None:
        while owner.alive():
            time.sleep(WATCH_POLL)
    deadline = time.monotonic() + CREATE_GRACE + 60
    while time.monotonic() < deadline:
        left = [
            r
            for r in registry.of_run(run_id)
            if not r.kept and not (r.persistent and r.state == "ready")
        ]
        if not left:
            break
        try:
            reap(client, registry, WATCHDOG_POLICY)
        except Exception as exc:  # keep trying until the deadline; the next run reaps too
            log.warning("reaping failed: %s", exc)
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_orbstack.cleanup REGISTRY RUN_ID OWNER_PID ORBCTL``"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        sys.stderr.write(f"usage: {main.__doc__}\n")
        return 2
    registry_path, run_id, pid_text, executable = args
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="orbstack-watchdog: %(message)s")
    watch(Registry(Path(registry_path)), run_id, Owner.of_pid(int(pid_text)), Orbctl(executable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
