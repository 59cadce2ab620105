"""Exclusive file locks for orbsim's lock files (``state.lock``, ``net.lock``, ...).

A lock is ``flock(LOCK_EX)`` on the whole file, which stays in place on release (lock files are
never deleted, so every waiter locks the same inode) — what ``filelock.FileLock`` does on
Linux, and compatible with it: a process holding one of these files through ``filelock``
excludes orbsim and vice versa.  orbsim only runs on Linux, so it does not need filelock's
portability, and importing filelock costs more than every other module on the CLI's path
together (~30 ms per command on a 2-core VM).

The descriptor is close-on-exec (``os.open``'s default), so a process spawned under the lock
(``dnsmasq`` under ``net.lock``) never inherits it.  Waiting polls with a short, growing
interval (1 ms up to 20 ms): contended locks are held for milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from collections.abc import Iterator


class LockTimeout(TimeoutError):
    """The lock was not acquired within its timeout."""


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0644 if missing) for the ``with`` block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            deadline = time.monotonic() + timeout
            step = 0.001
            while True:
                time.sleep(step)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"The file lock '{os.fspath(path)}' could not be acquired."
                        ) from None
                    step = min(step * 2, 0.02)
        yield
    finally:
        os.close(fd)  # releases the lock
