"""Latency and fault injection, configured from the environment (all off by default).

``ORBSIM_LATENCY="create=2.5,clone=0.4,start=0.8,stop=0.3,delete=0.5,run=0.05"``
    seconds of real delay added per command (``*=x`` for every command); multiplied by
    ``ORBSIM_LATENCY_SCALE`` (default 1).  ``ORBSIM_LATENCY=realistic`` is the preset
    :data:`REALISTIC_LATENCY` (the model the benchmarks use, docs/performance.md), and
    ``realistic,create=40`` overrides parts of it.
``ORBSIM_FAIL="create=0.3,start=0.1"``
    probability of a transient failure per command.  ``*=p`` applies to every command except
    ``run``/``push``/``pull`` (commands executed inside machines only fail when named).
``ORBSIM_FAIL_KINDS="network,ip"`` or ``"create=network|ip,start=busy"``
    which failures to draw from: ``network`` (image index lookup timeout), ``ip`` (machine
    didn't start in 30s (missing IP address)), ``busy`` (operations are in progress: clone),
    ``manager`` (machine manager is stopping), and the rarer texts of the error catalogue
    (docs/orbctl-contract.md §9): ``tls`` (TLS handshake timeout), ``download`` (GET download
    status: 503), ``sha`` (sha256 mismatch), ``notfound404`` (GET download status: 404 - a
    permanent failure until OrbStack is updated), ``crash`` (machine crashed on startup),
    ``shutdown`` (canceled by machine shutdown), ``nostart`` (machine did not start),
    ``stoptimeout`` (stop 'N': timeout).  Default: create → network|ip, start/restart →
    ip|busy, everything else → busy.  A kind listed twice is drawn twice as often.
``ORBSIM_HANG="create=0.05"``
    probability that the invocation hangs forever (until killed), with nothing done.
``ORBSIM_DETACH="create=0.1"``
    create/clone only: the client hangs (``ORBSIM_DETACH_MODE=hang``, default) or exits 124
    (``exit124``) while a detached process finishes the operation after the latency.
``ORBSIM_PERMANENT="create=image"``
    the first invocation of the command fails permanently (``image``: image not found, create
    only; ``notfound``: machine not found, every other command).
``ORBSIM_WEDGE_AFTER=N``
    OrbStack 2.2.3's churn wedge (docs/orbctl-contract.md §16, orbstack#2688): the first N
    machines created or cloned in this home (counted while the knob is set, in
    ``$ORBSIM_HOME/wedge.json``) work; after them every ``create`` fails with ``create 'NAME':
    setup: machine didn't start in 30s (missing IP address)`` and every ``start`` of a machine
    made later (a clone) with ``start 'NAME': setup: …`` (the same text), each after
    ``ORBSIM_WEDGE_DELAY`` seconds (default 5; OrbStack waits 30).  For good: deleting
    machines or ``orbsim stop``/``start`` does not clear it (only a new home does).  A clone
    itself still succeeds (it needs no address), as does a start made on the way by ``run`` or
    ``restart``.

Which command draws which kind is the table :data:`COMMAND_FAULTS`; every kind drawn is applied
by :func:`apply` (through ``Ctx.inject``), the one place that acts on a :class:`Decision`.
docs/simulator.md "Fault injection" says how to add a kind.
``ORBSIM_SEED`` (default ``0``): the decision for the n-th faulted invocation of a command is
    drawn from ``random.Random(f"{seed}:{cmd}:{n}")``; n is a per-command counter kept in
    ``$ORBSIM_HOME/faults.json`` (incremented under ``faults.lock``) and only advanced for
    commands that have a fault probability configured.
``ORBSIM_FAULTS_OFF=1`` disables all of the above, latency included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = [
    "BEHAVIOUR_VARS",
    "COMMAND_FAULTS",
    "Decision",
    "apply",
    "decide",
    "fail_message",
    "latency",
    "sleep_latency",
]

#: Every environment variable that changes how orbsim behaves (latency, faults, the killed-create
#: switch, the default user): the one list a caller clears to get orbsim's plain, OrbStack-like
#: behaviour (test harnesses, the conformance suite).
BEHAVIOUR_VARS = (
    "ORBSIM_LATENCY",
    "ORBSIM_LATENCY_SCALE",
    "ORBSIM_FAIL",
    "ORBSIM_FAIL_KINDS",
    "ORBSIM_HANG",
    "ORBSIM_DETACH",
    "ORBSIM_DETACH_MODE",
    "ORBSIM_PERMANENT",
    "ORBSIM_WEDGE_AFTER",
    "ORBSIM_WEDGE_DELAY",
    "ORBSIM_SEED",
    "ORBSIM_FAULTS_OFF",
    "ORBSIM_KILLED_CREATE",
    "ORBSIM_DEFAULT_USER",
)


TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Literal, NoReturn, TypeAlias

    from .ctx import Ctx

    #: What fault injection can do to one invocation (the vocabulary of :data:`COMMAND_FAULTS`).
    FaultKind: TypeAlias = Literal["hang", "detach", "fail", "permanent", "wedge"]


class Decision:
    """What fault injection decided for this invocation."""

    __slots__ = ("detail", "kind", "n")

    def __init__(
        self, kind: FaultKind | None = None, detail: str | None = None, n: int = -1
    ) -> None:
        self.kind = kind
        self.detail = detail  # failure kind ("network", "ip", ...) or permanent kind
        self.n = n

    @property
    def label(self) -> str | None:
        if self.kind is None:
            return None
        return f"{self.kind}:{self.detail}" if self.detail else self.kind


class Hung(BaseException):
    """Raised in a create/clone server whose invocation hung, once its client is gone: the
    half-made machine is discarded and the server exits without another log line."""


_LIFECYCLE: tuple[FaultKind, ...] = ("hang", "fail", "permanent")
_DETACHABLE: tuple[FaultKind, ...] = ("hang", "detach", "fail", "permanent")
#: command -> the fault kinds :func:`decide` draws for it; :func:`apply` applies each of them
#: (tests/orbsim/test_sim_fault_matrix.py checks every pair).  A command missing here never
#: draws a fault (list, info, status, ...).  To add a kind: add it to ``FaultKind``, to the
#: commands that draw it here, draw it in :func:`decide` and apply it in :func:`apply`.
COMMAND_FAULTS: dict[str, tuple[FaultKind, ...]] = {
    "create": (*_DETACHABLE, "wedge"),
    "clone": _DETACHABLE,
    "start": (*_LIFECYCLE, "wedge"),
    "stop": _LIFECYCLE,
    "restart": _LIFECYCLE,
    "delete": _LIFECYCLE,
    "rename": _LIFECYCLE,
    "export": _LIFECYCLE,
    "import": _LIFECYCLE,
    "run": _LIFECYCLE,
    "push": _LIFECYCLE,
    "pull": _LIFECYCLE,
}
#: ``ORBSIM_PERMANENT`` kinds: the command(s) each applies to (None: every command but those
#: named elsewhere) and its text (``{name}``: the machine, ``{image}``: the image spec).
PERMANENT_TEXT: dict[str, str] = {
    "image": "make rootfs: image not found: {image}",
    "notfound": "machine not found: '{name}'",
}


def permanent_kind(cmd: str, detail: str) -> str | None:
    """The permanent kind ``cmd`` really fails with for ``ORBSIM_PERMANENT=cmd=detail``, or None
    when that pair is not drawn (``image`` is a create's failure; every other command that
    draws faults fails with ``notfound``)."""
    detail = detail.strip().lower()
    if cmd == "create":
        return "image" if detail in ("", "image") else None
    return "notfound" if detail == "notfound" and cmd in COMMAND_FAULTS else None


INSIDE = ("run", "push", "pull")
#: ``ORBSIM_LATENCY=realistic``: seconds per command approximating OrbStack 2.x on Apple
#: silicon (assumptions, not measurements: docs/performance.md gives the basis of each figure).
#: ``bench/_common.py`` uses this very table as its default latency model.
REALISTIC_LATENCY: dict[str, float] = {
    "create": 15.0,
    "clone": 0.5,
    "start": 1.5,
    "stop": 1.0,
    "delete": 0.5,
    "run": 0.03,
}
PRESETS: dict[str, dict[str, float]] = {"realistic": REALISTIC_LATENCY}
DETACHABLE = tuple(c for c, kinds in COMMAND_FAULTS.items() if "detach" in kinds)
KINDS = (
    "network",
    "ip",
    "busy",
    "manager",
    "tls",
    "download",
    "sha",
    "notfound404",
    "crash",
    "shutdown",
    "nostart",
    "stoptimeout",
)
NETWORK_MSG = (
    "make rootfs: fetch index: get index: "
    'Get "https://cdn-images.orbstack.dev/streams/v1/images.json": '
    "dial tcp: lookup cdn-images.orbstack.dev: i/o timeout"
)
IP_MSG = "setup: machine didn't start in 30s (missing IP address)"


def _off() -> bool:
    return os.environ.get("ORBSIM_FAULTS_OFF", "") not in ("", "0", "false", "no")


def parse_map(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        if sep:
            out[key.strip()] = val.strip()
        else:
            out.setdefault("", "")
            out[""] = (out[""] + "|" + key).strip("|")
    return out


def _prob(var: str, cmd: str) -> float:
    m = parse_map(os.environ.get(var, ""))
    val = m.get(cmd)
    if val is None and cmd not in INSIDE:
        val = m.get("*")
    try:
        return max(0.0, min(1.0, float(val))) if val else 0.0
    except ValueError:
        return 0.0


def latency(cmd: str) -> float:
    if _off():
        return 0.0
    m = parse_map(os.environ.get("ORBSIM_LATENCY", ""))
    val = m.get(cmd, m.get("*"))
    if val is None:
        for word in m.get("", "").split("|"):
            preset = PRESETS.get(word.strip().lower())
            if preset is not None and cmd in preset:
                val = str(preset[cmd])
    try:
        secs = float(val) if val else 0.0
        scale = float(os.environ.get("ORBSIM_LATENCY_SCALE", "1") or 1)
    except ValueError:
        return 0.0
    return max(0.0, secs * scale)


def sleep_latency(cmd: str) -> None:
    secs = latency(cmd)
    if secs > 0:
        import time

        time.sleep(secs)


def default_kinds(cmd: str) -> list[str]:
    if cmd == "create":
        return ["network", "ip"]
    if cmd in ("start", "restart"):
        return ["ip", "busy"]
    return ["busy"]


def kinds_for(cmd: str) -> list[str]:
    m = parse_map(os.environ.get("ORBSIM_FAIL_KINDS", ""))
    raw = m.get(cmd) or m.get("") or m.get("*")
    if not raw:
        return default_kinds(cmd)
    kinds = [k.strip() for k in raw.replace("|", ",").split(",") if k.strip() in KINDS]
    return kinds or default_kinds(cmd)


def _bump(home: Path, key: str, only_if_zero: bool = False) -> int:
    from .locks import locked

    home.mkdir(parents=True, exist_ok=True)
    path = home / "faults.json"
    with locked(home / "faults.lock", timeout=120):
        try:
            counters: dict[str, int] = json.loads(path.read_text())
        except (OSError, ValueError):
            counters = {}
        n = counters.get(key, 0)
        if only_if_zero and n:
            return n
        counters[key] = n + 1
        from .files import write_json

        write_json(path, counters)
    return n


def wedge_after() -> int | None:
    """``ORBSIM_WEDGE_AFTER``: how many machines this home makes before it wedges (None: off)."""
    raw = os.environ.get("ORBSIM_WEDGE_AFTER", "").strip()
    try:
        return max(0, int(raw)) if raw else None
    except ValueError:
        return None


def wedge_delay() -> float:
    """``ORBSIM_WEDGE_DELAY``: seconds a wedged create/start takes to fail (default 5)."""
    try:
        return max(0.0, float(os.environ.get("ORBSIM_WEDGE_DELAY", "") or 5))
    except ValueError:
        return 5.0


def _wedged(home: Path, cmd: str, name: str | None, after: int) -> bool:
    """Whether this create/start meets the wedge; a create or clone admitted before it is
    counted (once per name) in ``wedge.json``, under the fault counters' lock."""
    from .files import write_json
    from .locks import locked

    home.mkdir(parents=True, exist_ok=True)
    path = home / "wedge.json"
    with locked(home / "faults.lock", timeout=120):
        try:
            admitted: list[str] = list(json.loads(path.read_text()).get("admitted", []))
        except (OSError, ValueError, AttributeError):
            admitted = []
        if name is not None and name in admitted:
            return False  # made before the wedge: it keeps working (and a retry is no new one)
        if cmd == "start":
            return len(admitted) >= after
        if len(admitted) >= after:
            return cmd == "create"  # a clone needs no address: it still succeeds
        admitted.append(name or f"#{len(admitted)}")
        write_json(path, {"after": after, "admitted": admitted})
    return False


def decide(home: Path, cmd: str, name: str | None = None) -> Decision:
    """This invocation's fault (``Decision()`` for none): only kinds ``COMMAND_FAULTS`` lists
    for ``cmd`` are drawn.  ``name``: the machine it makes or starts (the wedge needs it)."""
    allowed = COMMAND_FAULTS.get(cmd, ())
    if _off() or not allowed:
        return Decision()
    after = wedge_after()
    wedge_cmd = "wedge" in allowed or cmd == "clone"  # a clone is counted, never wedged
    if after is not None and wedge_cmd and _wedged(home, cmd, name, after):
        return Decision("wedge", "ip")
    raw = parse_map(os.environ.get("ORBSIM_PERMANENT", "")).get(cmd)
    perm = permanent_kind(cmd, raw) if raw is not None and "permanent" in allowed else None
    if perm and _bump(home, f"permanent:{cmd}", only_if_zero=True) == 0:
        return Decision("permanent", perm)
    p_hang = _prob("ORBSIM_HANG", cmd) if "hang" in allowed else 0.0
    p_detach = _prob("ORBSIM_DETACH", cmd) if "detach" in allowed else 0.0
    p_fail = _prob("ORBSIM_FAIL", cmd) if "fail" in allowed else 0.0
    if p_hang <= 0 and p_detach <= 0 and p_fail <= 0:
        return Decision()
    import random

    n = _bump(home, cmd)
    seed = os.environ.get("ORBSIM_SEED", "0")
    rng = random.Random(f"{seed}:{cmd}:{n}")
    r_hang, r_detach, r_fail = rng.random(), rng.random(), rng.random()
    if r_hang < p_hang:
        return Decision("hang", None, n)
    if r_detach < p_detach:
        return Decision("detach", None, n)
    if r_fail < p_fail:
        return Decision("fail", rng.choice(kinds_for(cmd)), n)
    return Decision(None, None, n)


def apply(ctx: Ctx, name: str | None, image: dict[str, str] | None = None) -> None:
    """Apply this invocation's fault and latency: the one place a :class:`Decision` acts.

    Called once per invocation (``Ctx.inject``) where the command starts its real work, after
    its reservation is taken (so a killed hang settles like any killed call).  ``hang``: the
    op log gets the line (``rc`` null: it never exits) and the invocation hangs until killed,
    having done nothing; in a create/clone server (``ctx.on_hang`` set) the client hangs and the
    server discards the machine once the client is gone.  ``permanent``: the error text at
    once.  ``wedge``: the missing-IP text after :func:`wedge_delay` (instead of the latency).
    Then the latency; ``fail``: the transient text.  ``detach`` is a create/clone's client
    behaviour (:func:`client_mode`, in ``server.serve``): here it is latency only.
    """
    d = ctx.decide(name)
    if d.kind == "hang":
        from . import oplog

        oplog.append(ctx.home, oplog.entry(ctx, None))
        ctx.logged = True
        if ctx.on_hang is not None:
            ctx.on_hang()  # returns once the client is gone
            raise Hung()
        hang_forever()
    from .errors import SimError

    if d.kind == "permanent":
        spec = ""
        if image is not None:
            spec = "{" + " ".join(image.get(k, "") for k in ("distro", "version", "arch")) + " "
            spec += image.get("variant", "default") + "}"
        text = PERMANENT_TEXT[d.detail or "notfound"].format(name=name or "", image=spec)
        raise SimError(text)
    if d.kind == "wedge":
        import time

        time.sleep(wedge_delay())  # OrbStack waits 30 s for the address that never comes
        raise SimError(fail_message(ctx.cmd, "ip", name))
    sleep_latency(ctx.cmd)
    if d.kind == "fail":
        raise SimError(fail_message(ctx.cmd, d.detail or "busy", name))


def client_mode(d: Decision) -> str:
    """How a create/clone client behaves: ``wait`` for its server's answer, or (``detach``)
    ``hang`` / ``exit124`` while the server finishes in the background."""
    return detach_mode() if d.kind == "detach" else "wait"


CDN = "https://cdn-images.orbstack.dev"
#: Texts of the rarer kinds, without the ``create 'N': `` prefix; ``{n}`` is the machine name.
KIND_TEXT = {
    "tls": f'make rootfs: fetch index: get index: Get "{CDN}/streams/v1/images.json": '
    "net/http: TLS handshake timeout",
    "download": "make rootfs: download rootfs: GET download status: 503 Service Unavailable",
    "sha": f"make rootfs: download rootfs: sha256 mismatch for URL {CDN}/images/rootfs.tar.zst",
    "notfound404": "make rootfs: download rootfs: GET download status: 404 Not Found",
    "crash": "setup: machine crashed on startup",
    "shutdown": "setup: do initial setup: canceled by machine shutdown",
    "nostart": "start: machine did not start: {n} - stopped",
}


def fail_message(cmd: str, kind: str, name: str | None) -> str:
    """The server error text (without the ``[-32098] `` prefix) for an injected failure."""
    prefix = f"create '{name}': " if cmd == "create" else ""
    if kind == "network":
        return prefix + NETWORK_MSG
    if kind == "ip":
        if cmd == "create":
            return prefix + IP_MSG
        return f"{cmd} '{name}': {IP_MSG}" if name else IP_MSG
    if kind == "manager":
        return prefix + "machine manager is stopping"
    if kind == "stoptimeout":
        return f"stop '{name or ''}': timeout"
    if kind in KIND_TEXT:
        return prefix + KIND_TEXT[kind].format(n=name or "")
    return prefix + f"cannot {cmd}: operations are in progress: clone"


def detach_mode() -> str:
    mode = os.environ.get("ORBSIM_DETACH_MODE", "hang").strip().lower()
    return "exit124" if mode in ("exit124", "124", "exit") else "hang"


def hang_forever() -> NoReturn:
    import signal
    import time

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    while True:
        time.sleep(3600)
