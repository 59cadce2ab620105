"""Machine lifecycle on LXC: booting and stopping a machine's container (the engine), and the
start/stop/delete/rename commands (their reservations come from ``transitions``).  Creating and
cloning (``create``), export/import (``archive``), the guest's files and scripts (``guest``)
and the record (``records``) live in their own modules.

A machine is ``$ORBSIM_HOME/machines/<id>/`` with ``upper/`` (its own overlay layer over a
read-only lower root filesystem: the cached base of its release, or an imported root),
``olwork/`` (overlayfs' work directory, made by LXC), ``console.log`` (the machine's console,
written by LXC, plus orbsim's own notes) and ``lxc.log``; its LXC container is
``$ORBSIM_HOME/lxc/<id>/config`` (see ``lxc.py``), generated at each start.  A *running*
machine is a running container; its record's ``holder`` is the identity (host pid + start
time) of the container's init process (systemd), so a machine whose init died is ``stopped``
and a recycled pid is never taken for it.  Everything run in a machine goes through
``lxc-attach``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from . import faults, lxc, net, rootfs, transitions
from . import state as S
from .ctx import Ctx
from .distros import valid_name
from .errors import SimError
from .guest import NO_INIT, guest_root_sh, has_init, hosts_text, write_identity
from .records import console_log, note
from .settings import lxc_limits

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any


def _restore_lower(ctx: Ctx, rec: S.Record) -> Path:
    lower = Path(rec["lower"])
    if (lower / "etc").is_dir():
        return lower
    if lower.parent.parent == ctx.cache / "base":
        # the shared base was deleted: restore/rebuild it (same release); the machine's own
        # changes live in its upper layer
        suite = rec.get("suite") or rootfs.SUITE
        lower = rootfs.ensure_base(ctx.cache, suite=suite)
        with S.transaction(ctx.home) as t:
            r = t.st["machines"].get(rec["id"])
            if r is not None:
                r["lower"] = str(lower)
        return lower
    raise SimError(f"start '{rec['name']}': root filesystem missing: {lower}")


def start_machine(
    ctx: Ctx, rec: S.Record, while_booting: Callable[[], None] | None = None
) -> tuple[dict[str, Any], str]:
    """Boot the machine's container and wait until it is ready; return (init ident, ip4).

    ``while_booting`` is called once the container runs, before waiting for systemd (work
    that does not need a booted system overlaps the boot).  Nothing is left behind when this
    fails (container stopped, address released).
    """
    home, mid = ctx.home, rec["id"]
    mdir = S.machine_dir(home, mid)
    lower = _restore_lower(ctx, rec)
    upper = mdir / "upper"
    upper.mkdir(parents=True, exist_ok=True)
    lxc.reap(lxc.lxcpath(home), mid)  # a container a killed orbsim left running
    init: dict[str, Any] | None = None
    try:
        addr = net.acquire(home, lxc.lxcpath(home), mid, rec["name"])
        write_identity(upper, lower, rec["name"], addr["dns"])
        init_cmd = None
        if not has_init(upper, lower):
            (upper / ".orbsim-init").write_text(NO_INIT)
            (upper / ".orbsim-init").chmod(0o755)
            init_cmd = "/.orbsim-init"
        lxc.write_config(
            home,
            mid,
            name=rec["name"],
            lower=lower,
            upper=upper,
            arch=rec["image"].get("arch", "amd64"),
            net=addr,
            console_log=console_log(home, mid),
            init_cmd=init_cmd,
            extra=lxc_limits(rec.get("config") or {}),
        )
        init = lxc.start(home, mid, mdir / "lxc.log")
        net.started(home, mid, init)
        with S.transaction(home) as t:  # visible as ``starting`` with a live init from now on
            r = t.st["machines"].get(mid)
            if r is not None:
                r["holder"], r["ip4"] = init, addr["ip"]
        if while_booting is not None:
            while_booting()
        word = lxc.wait_ready(home, mid, init)
        if word != "running":
            note(home, mid, f"booted: systemd is {word}")
        return init, addr["ip"]
    except BaseException as exc:
        note(home, mid, f"start failed: {exc}")
        lxc.stop(home, mid, init, kill=True)
        net.release(home, mid)
        if isinstance(exc, SimError) and not exc.msg.startswith(("start", "create", "machine")):
            raise SimError(
                f"start: machine did not start: {rec['name']} - stopped", exc.msg
            ) from None
        raise


def stop_machine(home: Path, rec: S.Record, *, kill: bool = False) -> None:
    """Stop the container (clean unless ``kill``) and free its address.

    A clean stop frees the address once the machine is down (its services may use the network
    while they stop); a killed machine's address (and, for the last machine, the network) goes
    while the kernel tears the container down."""
    mid = rec["id"]
    if kill:
        lxc.stop(home, mid, rec.get("holder"), kill=True, killed=lambda: net.release(home, mid))
    else:
        lxc.stop(home, mid, rec.get("holder"))
        net.release(home, mid)


def reap_machine(home: Path, mid: str) -> None:
    """No container of this machine runs and its address is free (after a crash, a discard)."""
    lxc.reap(lxc.lxcpath(home), mid)
    net.release(home, mid)


def ensure_running_flag(ctx: Ctx) -> None:
    """Commands other than status/stop/restart "start OrbStack" when it is stopped."""
    if S.read(ctx.home)["running"]:
        return
    with S.transaction(ctx.home) as t:
        t.st["running"] = True
        t.st["restore_on_start"] = []


def start_one(ctx: Ctx, key: str, *, inject: bool = True) -> None:
    """Start machine ``key`` (nothing to do when it runs); ``inject=False``: a start made on
    the way by another command (restart, run, ``start`` of OrbStack) gets only its latency."""
    rec = transitions.reserve(ctx, key, "start")
    if rec is None:
        return
    try:
        if inject:
            ctx.inject(rec["name"])
        else:
            faults.sleep_latency("start")
        holder, ip4 = start_machine(ctx, rec)
    except BaseException:
        transitions.release(ctx, rec["id"], "start")
        raise
    with S.transaction(ctx.home) as t:
        r = t.st["machines"].get(rec["id"])
        if r is not None:
            r["state"], r["owner"], r["holder"], r["ip4"] = "running", None, holder, ip4
            t.st["running"] = True
    if r is None:  # deleted under our feet (cannot normally happen)
        reap_machine(ctx.home, rec["id"])
        raise transitions.not_found(key)


def stop_one(ctx: Ctx, key: str) -> None:
    rec = transitions.reserve(ctx, key, "stop")
    if rec is None:
        return
    try:
        ctx.inject(rec["name"])
        stop_machine(ctx.home, rec)
    except BaseException:
        transitions.release(ctx, rec["id"], "stop")
        raise
    with S.transaction(ctx.home) as t:
        r = t.st["machines"].get(rec["id"])
        if r is not None:
            r["state"], r["owner"], r["holder"], r["ip4"] = "stopped", None, None, None


def stop_all(ctx: Ctx) -> None:
    """``stop`` without names: stop every machine and mark OrbStack stopped."""
    st = S.read(ctx.home)
    running = [r for r in S.visible(st) if r["state"] != "stopped"]
    for r in running:
        with contextlib.suppress(SimError):
            stop_one(ctx, r["id"])
    with S.transaction(ctx.home) as t:
        t.st["running"] = False
        t.st["restore_on_start"] = [r["id"] for r in running]


def start_orbstack(ctx: Ctx) -> bool:
    """``start`` without names.  Returns False when OrbStack was already running."""
    st = S.read(ctx.home)
    if st["running"]:
        return False
    with S.transaction(ctx.home) as t:
        restore = list(t.st.get("restore_on_start") or [])
        t.st["running"] = True
        t.st["restore_on_start"] = []
    for mid in restore:
        with contextlib.suppress(SimError):
            start_one(ctx, mid, inject=False)
    return True


def discard(ctx: Ctx, mid: str) -> None:
    """A failed create/clone/import: the server deletes the half-made machine."""
    with S.transaction(ctx.home) as t:
        rec = t.st["machines"].get(mid)
        if rec is not None:
            t.discard_machine(rec)
    reap_machine(ctx.home, mid)


# ---------------------------------------------------------------- delete


def delete(ctx: Ctx, keys: list[str], all_: bool) -> None:
    st = S.read(ctx.home)
    if all_:
        targets = [r["id"] for r in st["machines"].values()]
    else:
        targets = []
        for key in keys:  # every name is resolved before any machine is deleted
            rec = S.find(st, key, include_dead=True)
            if rec is None:
                raise transitions.not_found(key)
            if S.effective_state(rec) == "creating":
                raise SimError("cannot transition from creating to deleting")
            if rec["id"] not in targets:
                targets.append(rec["id"])
    for mid in targets:
        name = st["machines"].get(mid, {}).get("name", mid)
        ctx.touch(name)
        _delete_one(ctx, mid, all_)


def _delete_one(ctx: Ctx, mid: str, all_: bool) -> None:
    # ``delete --all`` passes over machines being created
    rec = transitions.reserve(ctx, mid, "delete", by_id=True, skip=("creating",) if all_ else ())
    if rec is None:
        return
    try:
        ctx.inject(rec["name"])
    except BaseException:
        transitions.release(ctx, mid, "delete")
        raise
    stop_machine(ctx.home, rec, kill=True)  # its data is thrown away: no clean shutdown
    with S.transaction(ctx.home) as t:
        r = t.st["machines"].get(mid)
        if r is not None:
            t.discard_machine(r)


# ---------------------------------------------------------------- rename


def rename(ctx: Ctx, old: str, new: str) -> None:
    import subprocess

    found = S.find(S.read(ctx.home), old)
    if found is None:
        raise transitions.not_found(old)
    ctx.touch(found["name"])
    ctx.inject(found["name"])  # a hang holds no lock: the rename has not begun
    with S.transaction(ctx.home) as t:
        rec = S.find(t.st, old)
        if rec is None:
            raise transitions.not_found(old)
        ctx.touch(rec["name"])
        ctx.touch(new)
        if new == rec["name"]:
            return
        if not valid_name(new):
            raise SimError(f"invalid machine name '{new}'")
        if S.find(t.st, new) is not None:
            raise SimError(f"machine '\"{new}\"' already exists")
        transitions.guard("rename", rec)  # refused while creating/deleting or busy
        rec["name"] = new
        holder = rec.get("holder") if rec["state"] == "running" else None
    if holder and S.alive(holder):
        # a running machine follows at once: /etc/hostname, /etc/hosts, the kernel hostname
        # and its DNS name (a stopped one gets them written at its next start)
        root = Path(f"/proc/{holder['pid']}/root")
        with contextlib.suppress(OSError):
            (root / "etc/hostname").write_text(new + "\n")
            hosts = root / "etc/hosts"
            hosts.write_text(hosts_text(hosts.read_text(errors="replace"), new))
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            guest_root_sh(ctx.home, rec, 'hostname "$1"', new, timeout=30)
        net.rename(ctx.home, rec["id"], new)
