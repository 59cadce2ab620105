"""Detached watchdog: reaps one run's machines when its owner process dies.

Started by the run's main process (``lifecycle.spawn_watchdog``) in its own process group, so
Ctrl-C does not reach it.  It polls the owner's liveness (pid + start time, via psutil); once the
owner is gone - normal exit, crash or SIGKILL - it deletes the machines still recorded for that
run (never kept or reusable ones, never anything unrecorded) and exits.

Usage: ``python -m pytest_orbstack.watchdog REGISTRY RUN_ID OWNER_PID ORBCTL``
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import psutil

from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.registry import Owner, Registry
from pytest_orbstack.retry import RetryPolicy

POLL = 0.5


def _owner(pid: int) -> Owner | None:
    try:
        return Owner(pid=pid, started=psutil.Process(pid).create_time(), host=_host())
    except psutil.NoSuchProcess:
        return None


def _host() -> str:
    import socket

    return socket.gethostname()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        sys.stderr.write(__doc__ or "")
        return 2
    registry_path, run_id, pid_text, executable = args
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="orbstack-watchdog: %(message)s")
    owner = _owner(int(pid_text))
    if owner is not None:
        while owner.alive():
            time.sleep(POLL)
    registry = Registry(Path(registry_path))
    from pytest_orbstack.lifecycle import CREATE_GRACE, reap

    client = Orbctl(executable)
    policy = RetryPolicy(attempts=6, deadline=300)
    # Keep going while the run has records left: a create the dead run started may still be
    # finishing (OrbStack does not stop when its client dies); its machine is deleted once it
    # appears, or its record dropped after the grace period.
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
            reap(client, registry, policy)
        except Exception as exc:  # keep trying until the deadline; the next run reaps too
            logging.warning("reaping failed: %s", exc)
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
