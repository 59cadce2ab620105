"""The on-disk record of every machine this plugin created (read by the reaper in
:mod:`pytest_orbstack.cleanup`).

Ownership is never guessed from a name prefix: a machine is ours only if this registry holds a
record for it, written *before* the machine was created.  A record names its owner - the pid,
process start time and host of the pytest run's main process - so a dead owner can be told
from a live one (a recycled pid has another start time).  The reaper deletes only machines whose
record's owner is provably dead, on this host, and that are not kept on purpose.

The registry is a JSON file guarded by a :class:`filelock.FileLock` (the lock file is never
deleted), written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from pytest_orbstack.files import write_json

log = logging.getLogger("pytest_orbstack")

START_TIME_TOLERANCE = 1.0


@dataclass(frozen=True)
class Owner:
    """A process that owns machines: the run's main pytest process."""

    pid: int
    started: float
    host: str

    @classmethod
    def current(cls) -> Owner:
        owner = cls.of_pid(os.getpid())
        assert owner is not None
        return owner

    @classmethod
    def of_pid(cls, pid: int) -> Owner | None:
        """The live process ``pid`` as an owner, or ``None`` if there is no such process."""
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return None
        return cls(pid=pid, started=started, host=socket.gethostname())

    def alive(self) -> bool:
        """True unless this owner is provably gone (only decidable on the same host)."""
        if self.host != socket.gethostname():
            return True  # cannot tell: treat as alive
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return abs(proc.create_time() - self.started) < START_TIME_TOLERANCE
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True


@dataclass
class Record:
    name: str
    run_id: str
    kind: str
    owner: Owner
    spec_hash: str = ""
    slot: str = ""
    state: str = "creating"  # creating -> ready -> (kept | deleted)
    machine_id: str = ""
    persistent: bool = False
    kept: bool = False
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        owner = Owner(**data.pop("owner"))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(owner=owner, **known)


class Registry:
    """Lock-protected records of machines, one file per backend (``orbctl`` universe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=60)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Record]]:
        with self._lock:
            records = self._read()
            yield records
            self._write(records)

    def _read(self) -> dict[str, Record]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("registry %s unreadable (%s); starting a new one", self.path, exc)
            return {}
        return {
            name: Record.from_json(dict(data)) for name, data in raw.get("machines", {}).items()
        }

    def _write(self, records: dict[str, Record]) -> None:
        data = {"version": 1, "machines": {n: r.to_json() for n, r in sorted(records.items())}}
        write_json(self.path, data, indent=1)

    # -- records ---------------------------------------------------------------------------

    def register(self, record: Record) -> None:
        """Record a machine *before* it is created.  Refuses a name already recorded."""
        with self._locked() as records:
            existing = records.get(record.name)
            if existing is not None and existing.run_id != record.run_id:
                raise ValueError(f"machine name {record.name!r} is already recorded")
            records[record.name] = record

    def update(self, name: str, **fields: Any) -> None:
        with self._locked() as records:
            rec = records.get(name)
            if rec is not None:
                for key, value in fields.items():
                    setattr(rec, key, value)

    def forget(self, *names: str) -> None:
        with self._locked() as records:
            for name in names:
                records.pop(name, None)

    def get(self, name: str) -> Record | None:
        return self._read().get(name)

    def all(self) -> list[Record]:
        return list(self._read().values())

    def of_run(self, run_id: str) -> list[Record]:
        return [r for r in self._read().values() if r.run_id == run_id]

    def by_slot(self, slot: str, kind: str) -> list[Record]:
        return [r for r in self._read().values() if r.slot == slot and r.kind == kind]

    def reapable(self, *, exclude_run: str | None = None) -> list[Record]:
        """Records whose owner is provably dead and that nobody asked to keep."""
        out = []
        for rec in self._read().values():
            if rec.run_id == exclude_run or rec.kept:
                continue
            if rec.persistent and rec.state == "ready":
                continue  # a reusable machine: outlives its run on purpose
            if not rec.owner.alive():
                out.append(rec)
        return out


def default_state_dir() -> Path:
    """Where registries live: ``$ORBSTACK_STATE_DIR``, else the user's cache directory."""
    env = os.environ.get("ORBSTACK_STATE_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if os.uname().sysname == "Darwin":
        return home / "Library" / "Caches" / "pytest-orbstack"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "pytest-orbstack"


__all__ = ["Owner", "Record", "Registry", "default_state_dir"]
