"""The operation log: one JSON line per ``orbsim`` invocation in ``$ORBSIM_HOME/ops.log``.

Each line is ``{"ts", "pid", "cmd", "args", "machines", "rc", "fault"}`` where ``cmd`` is the
canonical command name (aliases are resolved: ``add`` -> ``create``, ``exec`` -> ``run`` …),
``machines`` the machine names the invocation acted on, ``rc`` the exit code (``null`` for an
invocation that hung on purpose and never returned) and ``fault`` the injected fault, if any
(``"fail:network"``, ``"hang"``, ``"detach"`` …), plus ``error`` (a server error the client did
not print).  A detached create/clone's line is written by its server once the work is done, with
``completed``; a create whose client was killed gets its server's line (``server``,
``completed``).  Every line is built by :func:`entry`.  A line is written with one ``write`` on an
``O_APPEND`` descriptor, so concurrent writers never interleave.  An invocation killed from
outside (SIGKILL) writes no line.

Public helpers: :func:`read_ops` and :func:`count`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any

    from .ctx import Ctx


def append(home: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    line = json.dumps({"ts": round(time.time(), 3), **entry}, separators=(",", ":")) + "\n"
    os.makedirs(home, exist_ok=True)
    fd = os.open(os.path.join(home, "ops.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_ops(home: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All recorded invocations of the simulator whose state home is ``home``, oldest first."""
    path = Path(home) / "ops.log"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn line can only be the last one while it is being written
    return out


def count(
    home: str | os.PathLike[str],
    cmd: str,
    *,
    ok: bool | None = None,
    machine: str | None = None,
) -> int:
    """Number of ``cmd`` invocations (canonical name, e.g. ``"create"``).

    ``ok=True`` counts only those that exited 0, ``ok=False`` only the others; ``machine``
    restricts to invocations that named that machine.
    """
    n = 0
    for op in read_ops(home):
        if op.get("cmd") != cmd:
            continue
        if ok is not None and (op.get("rc") == 0) != ok:
            continue
        if machine is not None and machine not in (op.get("machines") or []):
            continue
        n += 1
    return n


def entry(ctx: Ctx, rc: int | None) -> dict[str, Any]:
    """The one builder of an invocation's line (``ts`` is added by :func:`append`)."""
    return {
        "pid": ctx.pid,
        "cmd": ctx.cmd,
        "args": list(ctx.argv),
        "machines": list(ctx.machines),
        "rc": rc,
        "fault": ctx.fault,
        **({"error": ctx.error} if ctx.error else {}),
    }
