"""The machine state machine: which operation may begin in which state (one table, :data:`RULES`)
and the reservation every lifecycle operation takes before its slow work.

A machine is ``creating``, ``starting``, ``running``, ``stopping``, ``stopped`` or ``deleting``
(``state.TRANSITIONAL``: reserved by the process in ``owner``).  An operation either moves the
machine through a transitional state (start, stop, delete: ``reserve``) or holds it ``busy``
while the record keeps its state (rename, clone, export).  :func:`guard` answers, from the
table, whether the operation begins, has nothing to do, must wait for another process's
reservation, or is refused with OrbStack's text (``cannot transition from creating to
starting``, ``cannot delete: operations are in progress: clone``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import state as S
from .errors import SimError

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    from .ctx import Ctx

    Op: TypeAlias = Literal["start", "stop", "delete", "rename", "clone", "export"]
    Verdict: TypeAlias = Literal["begin", "done", "wait"]

WAIT_TIMEOUT = 120.0
SETTLED = ("running", "stopped")
MOVING = ("starting", "stopping")


@dataclass(frozen=True)
class Rule:
    """How one operation treats each state; a state in none of the lists refuses it."""

    word: str  # "starting" in "cannot transition from creating to starting"
    begin: tuple[str, ...]  # states the operation begins from
    done: tuple[str, ...] = ()  # states where there is nothing to do
    wait: tuple[str, ...] = ()  # another process is moving the machine: wait, then look again
    reserve: str | None = None  # the transitional state taken; None: held ``busy`` instead
    refused_while_busy: bool = True  # refused while another operation holds it busy


RULES: dict[Op, Rule] = {
    "start": Rule("starting", ("stopped",), ("running",), MOVING, reserve="starting"),
    "stop": Rule(
        "stopping", ("running",), ("stopped",), MOVING, "stopping", refused_while_busy=False
    ),
    "delete": Rule("deleting", SETTLED, (), (*MOVING, "deleting"), reserve="deleting"),
    "rename": Rule("renaming", (*SETTLED, *MOVING)),
    "clone": Rule("cloning", (*SETTLED, *MOVING)),
    "export": Rule("exporting", (*SETTLED, *MOVING)),
}


def guard(op: Op, rec: S.Record) -> Verdict:
    """``begin``, ``done`` or ``wait`` for ``op`` on ``rec`` (under the state lock); raises
    OrbStack's error when the operation is refused."""
    rule = RULES[op]
    st = rec["state"]
    if st in rule.done:
        return "done"
    if st not in rule.begin and st not in rule.wait:
        raise SimError(f"cannot transition from {st} to {rule.word}")
    busy = rec.get("busy")
    if busy and rule.refused_while_busy:
        raise SimError(f"cannot {op}: operations are in progress: {busy['op']}")
    return "begin" if st in rule.begin else "wait"


def begin(op: Op, rec: S.Record) -> None:
    """Take ``op``'s reservation of ``rec`` for this process (under the state lock)."""
    rule = RULES[op]
    if rule.reserve is not None:
        rec["state"], rec["owner"] = rule.reserve, S.me()
    else:
        rec["busy"] = {"op": op, **S.me()}


def reserve(
    ctx: Ctx, key: str, op: Op, *, by_id: bool = False, skip: tuple[str, ...] = ()
) -> S.Record | None:
    """Reserve machine ``key`` (a name or id; ``by_id``: an id, and a machine gone meanwhile is
    None) for ``op``, waiting out other processes' reservations.  Returns the record as
    reserved, or None when there is nothing to do (``done`` states, and ``skip`` states)."""
    while True:
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"].get(key) if by_id else S.find(t.st, key)
            if rec is None:
                if by_id:
                    return None  # gone already (a failed create that was cleaned up)
                raise not_found(key)
            ctx.touch(rec["name"])
            if rec["state"] in skip:
                return None
            verdict = guard(op, rec)
            if verdict == "done":
                return None
            if verdict == "begin":
                begin(op, rec)
                return rec
            mid = rec["id"]
        settle(ctx, mid)


def release(ctx: Ctx, mid: str, op: Op) -> None:
    """An operation that failed (or was interrupted): end its reservation; the machine is what
    it really is (running if its init lives, else stopped)."""
    with S.transaction(ctx.home) as t:
        r = t.st["machines"].get(mid)
        if r is None:
            return
        if RULES[op].reserve is None:
            r["busy"] = None
            return
        r["owner"] = None
        alive = op != "start" and S.alive(r.get("holder"))  # a failed start killed what it began
        r["state"] = "running" if alive else "stopped"
        if not alive:
            r["holder"], r["ip4"] = None, None


def settle(ctx: Ctx, mid: str) -> None:
    """Wait until another process's reservation on ``mid`` ends (or the machine is gone)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        rec = S.read(ctx.home)["machines"].get(mid)
        if rec is None or S.effective_state(rec) not in S.TRANSITIONAL:
            return
        if time.monotonic() >= deadline:
            raise SimError("timed out waiting for another operation on the machine")
        time.sleep(0.05)


def not_found(key: str) -> SimError:
    return SimError(f"machine not found: '{key}'")
