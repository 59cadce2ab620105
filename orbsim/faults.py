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
    ip|busy, everything else → busy.
``ORBSIM_HANG="create=0.05"``
    probability that the invocation hangs forever (until killed).
``ORBSIM_DETACH="create=0.1"``
    create/clone only: the client hangs (``ORBSIM_DETACH_MODE=hang``, default) or exits 124
    (``exit124``) while a detached process finishes the operation after the latency.
``ORBSIM_PERMANENT="create=image"``
    the first invocation of the command fails permanently (``image``: image not found;
    ``notfound``: machine not found).
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

__all__ = ["BEHAVIOUR_VARS", "Decision", "decide", "fail_message", "latency", "sleep_latency"]

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
    "ORBSIM_SEED",
    "ORBSIM_FAULTS_OFF",
    "ORBSIM_KILLED_CREATE",
    "ORBSIM_DEFAULT_USER",
)


class Decision:
    """What fault injection decided for this invocation."""

    __slots__ = ("detail", "kind", "n")

    def __init__(self, kind: str | None = None, detail: str | None = None, n: int = -1) -> None:
        self.kind = kind  # None | "hang" | "detach" | "fail" | "permanent"
        self.detail = detail  # failure kind ("network", "ip", ...) or permanent kind
        self.n = n

    @property
    def label(self) -> str | None:
        if self.kind is None:
            return None
        return f"{self.kind}:{self.detail}" if self.detail else self.kind


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
DETACHABLE = ("create", "clone")
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
        tmp = home / f".faults.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(counters, sort_keys=True))
        os.replace(tmp, path)
    return n


def decide(home: Path, cmd: str) -> Decision:
    if _off():
        return Decision()
    perm = parse_map(os.environ.get("ORBSIM_PERMANENT", "")).get(cmd)
    if perm and _bump(home, f"permanent:{cmd}", only_if_zero=True) == 0:
        return Decision("permanent", perm)
    p_hang = _prob("ORBSIM_HANG", cmd)
    p_detach = _prob("ORBSIM_DETACH", cmd) if cmd in DETACHABLE else 0.0
    p_fail = _prob("ORBSIM_FAIL", cmd)
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


def hang_forever() -> None:
    import signal
    import time

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    while True:
        time.sleep(3600)
