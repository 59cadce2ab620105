"""Processes, identified by pid *and* start time (a recycled pid is another process).

Separate from :mod:`orbsim.state` so the runtime modules (``lxc``, ``net``) and the state file
share it without importing each other.
"""

from __future__ import annotations

import contextlib
import os
import signal

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any


def proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def alive(ident: dict[str, Any] | None) -> bool:
    if not ident or not ident.get("pid"):
        return False
    st = proc_start_time(int(ident["pid"]))
    return st is not None and st == ident.get("start")


def me() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "start": proc_start_time(pid)}


def kill_ident(ident: dict[str, Any] | None, sig: int = signal.SIGKILL) -> None:
    if alive(ident):
        assert ident is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(ident["pid"]), sig)
