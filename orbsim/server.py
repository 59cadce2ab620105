"""The server side of ``create`` and ``clone``: work that goes on when its client dies.

OrbStack's RPC handler for create ignores the request context (docs/orbctl-contract.md §2
``create``): an ``orbctl create`` killed by a timeout or Ctrl-C does not stop the machine from
being made, so a naive retry meets ``machine already exists``.  orbsim does the same by default:
the slow part of a create or clone runs in a forked process in its own session (the "server"),
which owns the machine's reservation; the client waits for its answer and prints it.  Killing
the client (SIGKILL, SIGTERM, SIGINT, or its whole process group) leaves the server running.

``ORBSIM_KILLED_CREATE=discard`` restores the old simulator behaviour (the work runs in the
client process, so a killed client's half-made machine is discarded); only tests that need a
killed create to vanish set it.  The ``detach`` fault (``ORBSIM_DETACH``) uses the same server,
with a client that hangs or exits 124 instead of waiting.  A ``hang`` fault is drawn where the
work starts (``Ctx.inject``, in the server): the server tells its client to hang, waits until
the client is gone and discards the half-made machine (a hung create makes nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable

from . import faults
from . import state as S
from .ctx import Ctx
from .errors import HostUnsupported, SimError

ENV_KILLED_CREATE = "ORBSIM_KILLED_CREATE"
HANG = b"H"  # server -> client: this invocation hangs (a ``hang`` fault drawn in the server)


def killed_create_mode() -> str:
    """``continue`` (default, as OrbStack) or ``discard`` (the old simulator behaviour)."""
    value = os.environ.get(ENV_KILLED_CREATE, "").strip().lower()
    return "discard" if value in ("discard", "delete", "abort") else "continue"


def serve(ctx: Ctx, mid: str, work: Callable[[], None], *, prefix: str = "") -> int:
    """Run ``work`` (which finishes machine ``mid``) server-side; return the client's exit code.

    ``prefix`` (``"create 'NAME': "``) is put before a server error that lacks it, as OrbStack
    wraps every create failure.
    """
    client = faults.client_mode(ctx.decide())  # "wait" | "hang" | "exit124" (detach)
    if client == "wait" and killed_create_mode() == "discard":
        try:
            work()
        except SimError as exc:
            raise SimError(_prefixed(exc.msg, prefix)) from None
        return 0
    from . import oplog

    entry = oplog.entry(ctx, None)
    if client != "wait":  # the fault's client is logged once, by the server, when it is done
        entry["rc"] = None if client == "hang" else 124
    owner = S.me()  # the client
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the server: finishes the machine whatever happens to the client
        os.close(r)
        _detach_stdio(ctx, mid)
        ctx.on_hang = lambda: _hang_client(w, owner)
        code = 0
        result: dict[str, str] = {}
        try:
            with S.transaction(ctx.home) as t:
                rec = t.st["machines"].get(mid)
                if rec is not None:
                    rec["owner"] = S.me()
            os.write(w, b"R")
            work()
        except faults.Hung:  # logged when it hung; the machine is discarded (work's cleanup)
            os._exit(1)
        except SimError as exc:
            result, code = {"error": _prefixed(exc.msg, prefix)}, 1
        except HostUnsupported as exc:
            result, code = {"host": str(exc)}, 1
        except BaseException as exc:
            result, code = {"error": _prefixed(f"{type(exc).__name__}: {exc}", prefix)}, 1
        delivered = False
        if client == "wait":
            with contextlib.suppress(OSError):
                os.write(w, b"\n" + json.dumps(result).encode() + b"\n")
                delivered = True
        if not delivered:  # nobody is listening: the log is the only trace of the outcome
            entry["completed"] = code == 0
            if client == "wait":
                entry["server"] = True
            if result:
                entry["error"] = next(iter(result.values()))
            with contextlib.suppress(Exception):
                oplog.append(ctx.home, entry)
        os._exit(code)
    os.close(w)
    try:
        return _client(ctx, r, pid, client)
    finally:
        with contextlib.suppress(OSError):
            os.close(r)


def _client(ctx: Ctx, r: int, pid: int, client: str) -> int:
    with contextlib.suppress(OSError):
        os.read(r, 1)  # the server owns the reservation now
    if client != "wait":
        ctx.logged = True
        if client == "exit124":
            return 124
        faults.hang_forever()
    chunks: list[bytes] = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        if not chunks and chunk.startswith(HANG):  # the server's fault: this client hangs
            ctx.logged = True  # the server logged the invocation (rc null)
            faults.hang_forever()
        chunks.append(chunk)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    lines = b"".join(chunks).decode(errors="replace").split("\n")
    result = None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            break
    if not isinstance(result, dict):
        raise SimError("server exited without an answer")
    if "host" in result:
        raise HostUnsupported(result["host"])
    if "error" in result:
        raise SimError(str(result["error"]))
    return 0


def _prefixed(msg: str, prefix: str) -> str:
    return msg if not prefix or msg.startswith(prefix) else prefix + msg


def _hang_client(w: int, owner: dict[str, object]) -> None:
    """A hang drawn in the server: tell the client to hang, then wait until it is gone."""
    from .procs import wait_exit

    with contextlib.suppress(OSError):
        os.write(w, HANG)
    while not wait_exit(owner, 3600):
        pass


def _detach_stdio(ctx: Ctx, mid: str) -> None:
    """New session; stdin from /dev/null, stdout/stderr to the machine's console log (the
    client's pipes must not be held open: a caller waiting for EOF would wait for the server)."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    log = S.machine_dir(ctx.home, mid) / "console.log"
    logfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.close(devnull)
    os.close(logfd)
