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
    import subprocess
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


def wait_exit(ident: dict[str, Any], timeout: float) -> bool:
    """Wait until the process ``ident`` (any process, not only a child) has exited; True if it
    has.  Event-driven: a pidfd becomes readable at the exit (no polling interval)."""
    try:
        fd = os.pidfd_open(int(ident["pid"]))
    except (OSError, AttributeError):
        fd = -1
    try:
        if not alive(ident):  # checked after opening: the pidfd is of this very process
            return True
        if fd >= 0:
            import select

            select.select([fd], [], [], timeout)
        else:  # no pidfds (kernel < 5.3): poll
            import time

            deadline = time.monotonic() + timeout
            while alive(ident) and time.monotonic() < deadline:
                time.sleep(0.005)
        return not alive(ident)
    finally:
        if fd >= 0:
            os.close(fd)


def wait_child(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """``proc.wait(timeout)`` without its polling loop (sleeps doubling up to 50 ms): the exit
    is awaited on a pidfd, then reaped.  Kills the child when the timeout passes."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        fd = -1
    if fd >= 0:
        import select

        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
    if proc.poll() is None:
        if fd >= 0:
            proc.kill()
        else:
            import subprocess

            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
    return proc.wait()
