"""The simulator's persistent state: ``$ORBSIM_HOME/state.json`` guarded by ``state.lock``.

Writers take :func:`transaction` (an exclusive ``flock`` on ``state.lock``, :mod:`orbsim.locks`;
the state is written to a temp file and renamed into place); readers may call :func:`read`
without the lock.  Slow work never runs under the lock: a machine in a transitional state
(``creating``, ``starting``, ``stopping``, ``deleting``) is *reserved* by the process recorded in
its ``owner`` (pid + start time).  When that process is gone the reservation is void, and
:func:`effective_state` says what the machine really is:

* ``creating`` / ``deleting`` with a dead owner: the operation failed half way; the machine is
  treated as gone and the next transaction removes its record and directory (the real server
  deletes a machine whose create failed).  ``delete NAME`` still accepts such a name.
* ``starting`` / ``stopping`` / ``running`` with a dead owner: ``running`` if the machine's
  init process (``holder``: the LXC container's PID 1, pid + start time) is alive, else
  ``stopped`` (an init killed by someone means the machine is stopped).

Whatever a settled record leaves behind on the host (a container a killed ``orbsim start``
left running, the machine's address and with it maybe the whole network) is reaped after the
lock is released (:attr:`Txn.reap`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

# Process identity lives in .procs (shared with the runtime); re-exported for state users.
from .procs import alive as alive
from .procs import kill_ident as kill_ident
from .procs import me as me
from .procs import proc_start_time as proc_start_time

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    State: TypeAlias = dict[str, Any]
    Record: TypeAlias = dict[str, Any]

TRANSITIONAL = ("creating", "starting", "stopping", "deleting")
LOCK_TIMEOUT = 300.0


# ---------------------------------------------------------------- locations


def sim_home() -> Path:
    env = os.environ.get("ORBSIM_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(base) / "orbsim"


def cache_home() -> Path:
    env = os.environ.get("ORBSIM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orbsim"


def machine_dir(home: Path, mid: str) -> Path:
    return home / "machines" / mid


# ---------------------------------------------------------------- processes


# ---------------------------------------------------------------- ids


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, 26 Crockford base32 characters."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


# ---------------------------------------------------------------- load / save


def empty_state() -> State:
    return {
        "version": 1,
        "running": True,
        "default": None,
        "config": {},
        "machines": {},
        "images": {},
        "restore_on_start": [],
    }


def _load(home: Path) -> State:
    try:
        with open(home / "state.json") as f:
            st: State = json.load(f)
    except FileNotFoundError:
        return empty_state()
    base = empty_state()
    base.update(st)
    return base


def _unsettled(rec: Record) -> bool:
    """The record's stored state is not what the machine is (a dead owner or init)."""
    eff = effective_state(rec)
    return eff != rec["state"] or (eff == "stopped" and bool(rec.get("holder")))


def read(home: Path) -> State:
    """The state, lock-free.  When a record is unsettled (its operation's process died: a
    killed create, a killed start, an init killed by someone), it is settled first under the
    lock, so that whatever it left on the host is reaped by the very next orbsim call."""
    st = _load(home)
    if any(_unsettled(r) for r in st["machines"].values()):
        with transaction(home):
            pass
        st = _load(home)
    return st


def _write(home: Path, st: State) -> None:
    from .files import write_json

    write_json(home / "state.json", st)


def effective_state(rec: Record) -> str | None:
    """What the machine really is now; None means a failed create/delete (treat as gone)."""
    st: str = rec["state"]
    if st in TRANSITIONAL and alive(rec.get("owner")):
        return st
    if st in ("creating", "deleting"):
        return None
    if st in ("starting", "stopping", "running"):
        return "running" if alive(rec.get("holder")) else "stopped"
    return st


def visible(st: State) -> list[Record]:
    """Records that exist from a client's point of view, with ``state`` made effective."""
    out = []
    for rec in st["machines"].values():
        eff = effective_state(rec)
        if eff is None:
            continue
        r = dict(rec)
        r["state"] = eff
        out.append(r)
    return out


def find(st: State, key: str, *, include_dead: bool = False) -> Record | None:
    """Look a machine up by id first, then by name (effective records only by default)."""
    recs: list[Record] = list(st["machines"].values())
    for field in ("id", "name"):
        for rec in recs:
            if rec[field] == key and (include_dead or effective_state(rec) is not None):
                return rec
    return None


def default_machine(st: State) -> Record | None:
    recs = visible(st)
    for r in recs:
        if r["id"] == st.get("default"):
            return r
    if not recs:
        return None
    return sorted(recs, key=lambda r: r["name"])[0]


class Txn:
    """A locked read-modify-write of the state; cleanup work runs after the lock is released."""

    def __init__(self, home: Path, st: State) -> None:
        self.home = home
        self.st = st
        self.trash: list[Path] = []
        self.reap: list[str] = []
        self.gone: list[str] = []  # discarded machines: their LXC directory goes after the reap

    def discard_machine(self, rec: Record) -> None:
        """Drop a record now; kill its init; move its directory to the trash (fast rename)."""
        kill_ident(rec.get("holder"))
        self.reap.append(rec["id"])
        self.gone.append(rec["id"])
        self.st["machines"].pop(rec["id"], None)
        if self.st.get("default") == rec["id"]:
            self.st["default"] = None
        src = machine_dir(self.home, rec["id"])
        if src.exists():
            dst = self.home / "trash" / f"{rec['id']}-{os.urandom(4).hex()}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.rename(src, dst)
                self.trash.append(dst)


def normalize(txn: Txn) -> None:
    """Settle every record to its effective state (see module docstring)."""
    st = txn.st
    for rec in list(st["machines"].values()):
        eff = effective_state(rec)
        if eff is None:
            txn.discard_machine(rec)
            continue
        busy = rec.get("busy")
        if busy and not alive(busy):
            rec["busy"] = None
        if eff != rec["state"]:
            if eff == "stopped" and rec["state"] in TRANSITIONAL:
                txn.reap.append(rec["id"])  # e.g. a start killed after lxc-start
            rec["state"] = eff
            rec["owner"] = None
        if eff == "stopped":
            if rec.get("holder"):
                kill_ident(rec.get("holder"))
                if rec["id"] not in txn.reap:
                    txn.reap.append(rec["id"])
            rec["holder"] = None
            rec["ip4"] = None
    if st.get("default") and st["default"] not in st["machines"]:
        st["default"] = None
    if st.get("default") is None and st["machines"]:
        names = sorted(st["machines"].values(), key=lambda r: r["name"])
        st["default"] = names[0]["id"]


@contextlib.contextmanager
def transaction(home: Path) -> Iterator[Txn]:
    from .locks import locked

    home.mkdir(parents=True, exist_ok=True)
    txn: Txn
    with locked(home / "state.lock", timeout=LOCK_TIMEOUT):
        st = _load(home)
        before = json.dumps(st, sort_keys=True)
        txn = Txn(home, st)
        normalize(txn)
        yield txn
        if json.dumps(txn.st, sort_keys=True) != before:
            _write(home, txn.st)
    if txn.reap:
        from . import lxc, net

        for mid in txn.reap:
            lxc.reap(lxc.lxcpath(home), mid)
            net.release(home, mid)
    if txn.trash or txn.gone:
        import shutil

        for path in txn.trash:
            shutil.rmtree(path, ignore_errors=True)
        for mid in txn.gone:  # its config (and a killed monitor's pid file)
            shutil.rmtree(home / "lxc" / mid, ignore_errors=True)


def empty_trash(home: Path) -> None:
    import shutil

    trash = home / "trash"
    if trash.is_dir():
        for p in trash.iterdir():
            shutil.rmtree(p, ignore_errors=True)
