"""Sharing between pytest-xdist workers (and the controller) of one run.

* Session machines: pytest-xdist's documented recipe - a per-spec :class:`filelock.FileLock`
  under the run's shared temp directory, and a JSON handle written by the first worker and read
  by the others.  The lock is held only while the machine is looked up or made, never across a
  test body.  Teardown happens once, in the controller's (or single process's)
  ``pytest_sessionfinish``, after every worker is done.
* A cap on concurrent creates across all workers: ``N`` slot lock files; a create holds one.
* The run-wide record of missing-IP failures (:class:`MissingIpRecord`), from which
  :func:`pytest_orbstack.policy.wedged` tells a wedged OrbStack (every worker sees every
  worker's failures).

Lock files are never deleted (deleting a lock file after release breaks mutual exclusion).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pytest_orbstack.files import write_json


class SharedDir:
    """The directory every process of one run shares (created by the caller)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def lock(self, key: str, timeout: float = -1) -> FileLock:
        return FileLock(str(self.path / f"{key}.lock"), timeout=timeout)

    def get_or_make(
        self, key: str, make: Callable[[], dict[str, Any]], *, timeout: float = -1
    ) -> tuple[dict[str, Any], bool]:
        """Return the handle for ``key``, calling ``make`` if no process made it yet.

        Returns ``(handle, made_here)``.  A failed ``make`` records the error so other workers
        fail fast with the same message instead of trying again.
        """
        handle_path = self.path / f"{key}.json"
        with self.lock(key, timeout):
            if handle_path.exists():
                handle: dict[str, Any] = json.loads(handle_path.read_text())
                return handle, False
            try:
                handle = make()
            except Exception as exc:
                handle = {"error": f"{type(exc).__name__}: {exc}"}
                write_json(handle_path, handle)
                raise
            write_json(handle_path, handle)
            return handle, True

    def write(self, name: str, data: Any) -> None:
        write_json(self.path / name, data)

    def read_all(self, pattern: str) -> list[Any]:
        out = []
        for path in sorted(self.path.glob(pattern)):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    @contextmanager
    def create_slot(self, slots: int, poll: float = 0.05) -> Iterator[float]:
        """Hold one of ``slots`` run-wide create slots; yields the seconds waited for it.

        ``slots <= 0`` means no cap.
        """
        if slots <= 0:
            yield 0.0
            return
        started = time.monotonic()
        while True:
            for i in range(slots):
                lock = FileLock(str(self.path / f"create-slot-{i}.lock"), timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    continue
                try:
                    yield time.monotonic() - started
                finally:
                    lock.release()
                return
            time.sleep(poll)


class MissingIpRecord:
    """The names of the machine attempts that failed with the missing-IP text since the last
    machine started, shared by every process of the run (``missing-ip.json`` in the shared
    directory, changed under its lock and replaced atomically: a reader never sees a torn file).
    Without a shared directory it is this process's own list (unit tests)."""

    FILE = "missing-ip.json"

    def __init__(self, shared: SharedDir | None = None) -> None:
        self.shared = shared
        self._local: list[str] = []

    def failures(self) -> list[str]:
        if self.shared is None:
            return list(self._local)
        try:
            data = json.loads((self.shared.path / self.FILE).read_text())
        except (OSError, ValueError):
            return []
        return [str(n) for n in data] if isinstance(data, list) else []

    def failed(self, name: str) -> list[str]:
        """Record a missing-IP failure of ``name``; return the failures, this one last."""
        return self._change(lambda names: [*names, name][-100:])

    def started(self) -> None:
        """A machine started (or was created): the run is not wedged; forget the failures."""
        if self.failures():
            self._change(lambda names: [])

    def _change(self, update: Callable[[list[str]], list[str]]) -> list[str]:
        if self.shared is None:
            self._local = update(self._local)
            return list(self._local)
        with self.shared.lock("missing-ip"):
            names = update(self.failures())
            write_json(self.shared.path / self.FILE, names)
        return names


__all__ = ["MissingIpRecord", "SharedDir"]
