"""Machine lifecycle: create/start/stop/delete/rename/clone/export/import, on LXC.

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
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import faults, lxc, net, rootfs
from . import state as S
from .ctx import Ctx
from .distros import valid_name
from .errors import HostUnsupported, SimError

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    import subprocess
    from typing import Any

WAIT_TIMEOUT = 120.0
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Ubuntu's /etc/environment PATH (what most OrbStack users see), without /snap/bin
USER_PATH = (
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games:/usr/local/games"
)
HOST_TOOLS = ("lxc-start", "lxc-attach", "lxc-stop", "lxc-info", "nft", "dnsmasq", "ip", "tar")


# ---------------------------------------------------------------- host checks


def _on_path(tool: str) -> bool:
    """``shutil.which(tool) is not None`` without importing shutil (on every start's path)."""
    for d in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        p = os.path.join(d or ".", tool)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return True
    return False


def host_problem() -> str | None:
    """Why machines cannot run here, or None (``orbsim doctor`` says more)."""
    if not sys.platform.startswith("linux"):
        return f"orbsim needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "orbsim needs root (LXC privileged containers); run `orbsim doctor`"
    for tool in HOST_TOOLS:
        if not _on_path(tool):
            return (
                f"{tool} is not installed (apt-get install --no-install-recommends lxc); "
                "run `orbsim doctor`"
            )
    if not os.path.exists(lxc.COMMON_CONF):
        return f"{lxc.COMMON_CONF} is missing (reinstall lxc); run `orbsim doctor`"
    if not rootfs.base_available(S.cache_home()) and not _on_path("debootstrap"):
        return "debootstrap is not installed and no base root filesystem is cached"
    return None


def require_host() -> None:
    problem = host_problem()
    if problem:
        raise HostUnsupported(problem)


# ---------------------------------------------------------------- small helpers


def public_record(rec: S.Record, state: str | None = None) -> dict[str, Any]:
    """A ContainerRecord in the exact field order of docs/orbctl-contract.md §3."""
    img = rec["image"]
    cfg = rec.get("config") or {}
    out_cfg: dict[str, Any] = {
        "isolated": bool(cfg.get("isolated", False)),
        "default_username": cfg.get("default_username", ""),
    }
    for k, v in cfg.items():
        if k not in out_cfg:
            out_cfg[k] = v
    return {
        "id": rec["id"],
        "name": rec["name"],
        "image": {
            "distro": img["distro"],
            "version": img["version"],
            "arch": img["arch"],
            "variant": img.get("variant", "default"),
        },
        "config": out_cfg,
        "builtin": False,
        "state": state or rec["state"],
    }


def ip6_for(mid: str) -> str:
    import hashlib

    h = hashlib.sha256(mid.encode()).hexdigest()
    groups = [int(h[0:4], 16), int(h[4:6] + "ff", 16), int("fe" + h[6:8], 16), int(h[8:12], 16)]
    return "fd07:b51a:cc66:0:" + ":".join(f"{g:x}" for g in groups)


def lower_size(lower: Path) -> int:
    f = lower.parent / "size"
    try:
        return int(f.read_text())
    except (OSError, ValueError):
        pass
    size = rootfs.dir_size(lower) if lower.exists() else 0
    with contextlib.suppress(OSError):
        tmp = lower.parent / f".size.{os.getpid()}"
        tmp.write_text(str(size))
        os.replace(tmp, f)
    return size


def disk_size(home: Path, rec: S.Record) -> int | None:
    try:
        lower = Path(rec["lower"]) if rec.get("lower") else None
        total = lower_size(lower) if lower else 0
        return total + rootfs.dir_size(S.machine_dir(home, rec["id"]) / "upper")
    except OSError:
        return None


def _wait(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def console_log(home: Path, mid: str) -> Path:
    return S.machine_dir(home, mid) / "console.log"


def _note(home: Path, mid: str, msg: str) -> None:
    with contextlib.suppress(OSError), open(console_log(home, mid), "a") as f:
        f.write(f"[orbsim {time.strftime('%H:%M:%S')}] {msg}\n")


# ---------------------------------------------------------------- identity (upper layer)


def _layered(rel: str, upper: Path, lower: Path) -> Path | None:
    """The file the machine sees at ``rel`` (upper layer first), when it is a regular file."""
    for layer in (upper, lower):
        p = layer / rel
        if p.is_symlink():
            return None
        if p.exists():
            return p
    return None


def hosts_text(current: str, name: str) -> str:
    lines = [ln for ln in current.splitlines() if not ln.rstrip().endswith("# orbsim")]
    if not any(ln.split()[:1] == ["127.0.0.1"] for ln in lines if ln.strip()):
        lines.insert(0, "127.0.0.1\tlocalhost")
    if not any("ip6-localhost" in ln for ln in lines):
        lines.append("::1\t\tlocalhost ip6-localhost ip6-loopback")
    lines.append(f"127.0.1.1\t{name}.orb.local {name} # orbsim")
    return "\n".join(lines) + "\n"


def new_machine_id() -> str:
    return os.urandom(16).hex() + "\n"


def write_identity(upper: Path, lower: Path, name: str, dns: str | None) -> None:
    """Hostname, /etc/hosts line, resolver and (if it has none yet) a machine-id of its own,
    written into the machine's upper layer while it is stopped."""
    etc = upper / "etc"
    if not etc.is_dir():
        etc.mkdir(parents=True)
        with contextlib.suppress(OSError):
            st = (lower / "etc").stat()
            os.chmod(etc, st.st_mode & 0o7777)
    (etc / "hostname").unlink(missing_ok=True)
    (etc / "hostname").write_text(name + "\n")
    src = _layered("etc/hosts", upper, lower)
    cur = src.read_text(errors="replace") if src else ""
    if (etc / "hosts").is_symlink():
        (etc / "hosts").unlink()
    (etc / "hosts").write_text(hosts_text(cur, name))
    if dns:
        resolv = etc / "resolv.conf"
        if resolv.is_symlink() or resolv.exists():
            resolv.unlink()
        resolv.write_text(f"# orbsim's DNS on its bridge\nnameserver {dns}\nsearch orb.local\n")
    mid_file = etc / "machine-id"
    try:
        have = mid_file.read_text().strip() if not mid_file.is_symlink() else ""
    except OSError:
        have = ""
    if len(have) != 32:
        if mid_file.is_symlink() or mid_file.exists():
            mid_file.unlink()
        mid_file.write_text(new_machine_id())
        mid_file.chmod(0o444)


def reset_identity(upper: Path) -> None:
    """A clone (or an imported machine) is a new machine: new machine-id, no random seed,
    no dbus id; the hostname is rewritten at its first start."""
    etc = upper / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    mid_file = etc / "machine-id"
    if mid_file.is_symlink() or mid_file.exists():
        mid_file.unlink()
    mid_file.write_text(new_machine_id())
    mid_file.chmod(0o444)
    for rel in ("var/lib/dbus/machine-id", "var/lib/systemd/random-seed"):
        p = upper / rel
        if p.is_symlink() or p.exists():
            p.unlink()


def _has_init(upper: Path, lower: Path) -> bool:
    return any(os.path.lexists(layer / "sbin/init") for layer in (upper, lower))


NO_INIT = (
    "#!/bin/sh\n# orbsim: this root filesystem has no /sbin/init\n"
    "trap 'exit 0' PWR TERM INT\nwhile :; do sleep 3600 & wait $!; done\n"
)


# ---------------------------------------------------------------- the engine


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
        if not _has_init(upper, lower):
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
            _note(home, mid, f"booted: systemd is {word}")
        return init, addr["ip"]
    except BaseException as exc:
        _note(home, mid, f"start failed: {exc}")
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


# ---------------------------------------------------------------- executing in machines


def _root_env() -> dict[str, str]:
    env = {"PATH": ROOT_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root", "LANG": "C.UTF-8"}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def guest_root_popen(home: Path, mid: str, script: str, *args: str) -> subprocess.Popen[bytes]:
    """Start a shell script as root in a running machine (empty stdin, output captured)."""
    import subprocess

    return subprocess.Popen(
        lxc.attach_argv(home, mid, ["/bin/sh", "-c", script, "sh", *args]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_root_env(),
    )


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Wait for a :func:`guest_root_popen` process (killed after ``timeout``) and its output."""
    import subprocess

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def guest_root_sh(
    home: Path,
    rec: S.Record,
    script: str,
    *args: str,
    stdin: bytes | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[bytes]:
    """Run a shell script as root in a running machine, capturing its output."""
    import subprocess

    return subprocess.run(
        lxc.attach_argv(home, rec["id"], ["/bin/sh", "-c", script, "sh", *args]),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=_root_env(),
        timeout=timeout,
    )


# ---------------------------------------------------------------- waiting for others


def _settle(ctx: Ctx, mid: str) -> None:
    """Wait until another process's reservation on ``mid`` ends (or the machine is gone)."""

    def settled() -> bool:
        rec = S.read(ctx.home)["machines"].get(mid)
        return rec is None or S.effective_state(rec) not in S.TRANSITIONAL

    if not _wait(settled, WAIT_TIMEOUT, 0.05):
        raise SimError("timed out waiting for another operation on the machine")


def _not_found(key: str) -> SimError:
    return SimError(f"machine not found: '{key}'")


def ensure_running_flag(ctx: Ctx) -> None:
    """Commands other than status/stop/restart "start OrbStack" when it is stopped."""
    if S.read(ctx.home)["running"]:
        return
    with S.transaction(ctx.home) as t:
        t.st["running"] = True
        t.st["restore_on_start"] = []


# ---------------------------------------------------------------- start / stop


def start_one(ctx: Ctx, key: str, *, inject: bool = True) -> None:
    while True:
        with S.transaction(ctx.home) as t:
            rec = S.find(t.st, key)
            if rec is None:
                raise _not_found(key)
            ctx.touch(rec["name"])
            st = rec["state"]
            if st == "running":
                return
            if st == "creating":
                raise SimError("cannot transition from creating to starting")
            if st == "deleting":
                raise SimError("cannot transition from deleting to starting")
            busy = rec.get("busy")
            if busy:
                raise SimError(f"cannot start: operations are in progress: {busy['op']}")
            if st == "stopped":
                rec["state"] = "starting"
                rec["owner"] = S.me()
                break
            mid = rec["id"]
        _settle(ctx, mid)
    try:
        if inject:
            ctx.inject(rec["name"])
        else:
            faults.sleep_latency("start")
        holder, ip4 = start_machine(ctx, rec)
    except BaseException:
        with S.transaction(ctx.home) as t:
            r = t.st["machines"].get(rec["id"])
            if r is not None:
                r["state"], r["owner"], r["holder"], r["ip4"] = "stopped", None, None, None
        raise
    with S.transaction(ctx.home) as t:
        r = t.st["machines"].get(rec["id"])
        if r is not None:
            r["state"], r["owner"], r["holder"], r["ip4"] = "running", None, holder, ip4
            t.st["running"] = True
    if r is None:  # deleted under our feet (cannot normally happen)
        reap_machine(ctx.home, rec["id"])
        raise _not_found(key)


def stop_one(ctx: Ctx, key: str) -> None:
    while True:
        with S.transaction(ctx.home) as t:
            rec = S.find(t.st, key)
            if rec is None:
                raise _not_found(key)
            ctx.touch(rec["name"])
            st = rec["state"]
            if st == "stopped":
                return
            if st == "creating":
                raise SimError("cannot transition from creating to stopping")
            if st == "deleting":
                raise SimError("cannot transition from deleting to stopping")
            if st == "running":
                rec["state"] = "stopping"
                rec["owner"] = S.me()
                break
            mid = rec["id"]
        _settle(ctx, mid)
    try:
        ctx.inject(rec["name"])
        stop_machine(ctx.home, rec)
    except BaseException:
        with S.transaction(ctx.home) as t:
            r = t.st["machines"].get(rec["id"])
            if r is not None:
                r["owner"] = None
                r["state"] = "running" if S.alive(r.get("holder")) else "stopped"
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


# ---------------------------------------------------------------- create


def default_user() -> str:
    import pwd
    import re

    env = os.environ.get("ORBSIM_DEFAULT_USER")
    if env:
        return env
    names = [
        os.environ.get("SUDO_USER", ""),
        os.environ.get("USER", ""),
        os.environ.get("LOGNAME", ""),
    ]
    with contextlib.suppress(KeyError):
        names.append(pwd.getpwuid(os.getuid()).pw_name)
    for n in names:
        if n and n != "root" and re.match(r"^[a-z_][a-z0-9_-]{0,31}$", n):
            return n
    return "orbuser"


# Mirrors OrbStack's agent InitialSetup (scon/agent/setup.go): bash (else sh) from /etc/shells,
# a user with its own group and a home, membership of the admin groups that exist, the
# sudoers.d/orbstack line (written without a trailing newline, as OrbStack does, mode 0440) and
# /mnt/linux.  Unlike OrbStack the uid is the first free one from 1000 (not the macOS uid).
# Written for few processes (it runs while systemd boots): /etc/shells is read by the shell,
# one getent finds the groups, a new user gets them from useradd itself.
PROVISION = r"""
set -e
U="$1"
SH=""
if [ -r /etc/shells ]; then
  while IFS= read -r l || [ -n "$l" ]; do
    case "$l" in */bash) SH="$l"; break ;; esac
  done < /etc/shells
  if [ -z "$SH" ]; then
    while IFS= read -r l || [ -n "$l" ]; do
      case "$l" in */sh) SH="$l"; break ;; esac
    done < /etc/shells
  fi
fi
[ -n "$SH" ] || SH=/bin/sh
if [ "$U" != root ]; then
  G=""
  for e in $(getent group adm wheel staff admin sudo video || true); do
    G="$G${G:+,}${e%%:*}"
  done
  if ! id -u "$U" >/dev/null 2>&1; then
    if [ -n "$G" ]; then
      useradd --create-home --shell "$SH" --user-group --groups "$G" "$U"
    else
      useradd --create-home --shell "$SH" --user-group "$U"
    fi
  elif [ -n "$G" ]; then
    usermod -aG "$G" "$U"
  fi
  [ -d /etc/sudoers.d ] || mkdir -p /etc/sudoers.d
  if [ -e /etc/sudoers.d/orbstack ]; then
    printf '%s ALL=(ALL) NOPASSWD:ALL' "$U" > /etc/sudoers.d/orbstack
    chmod 0440 /etc/sudoers.d/orbstack
  else
    umask 0337
    printf '%s ALL=(ALL) NOPASSWD:ALL' "$U" > /etc/sudoers.d/orbstack
  fi
fi
[ -e /mnt/linux ] || ln -s / /mnt/linux 2>/dev/null || true
"""


def create(
    ctx: Ctx,
    name: str,
    image: dict[str, str],
    user: str,
    user_data: Any = None,
    password: str | None = None,
) -> int:
    """Create, start and provision a machine.  Returns the exit code for the client."""
    ctx.touch(name)
    pre = f"create '{name}': "
    if not valid_name(name):
        raise SimError(f"{pre}invalid machine name '{name}'")
    require_host()
    with S.transaction(ctx.home) as t:
        if S.find(t.st, name) is not None:
            raise SimError(f"{pre}machine already exists: '{name}'")
        mid = S.new_id()
        rec: S.Record = {
            "id": mid,
            "name": name,
            "image": dict(image),
            "config": {"isolated": False, "default_username": user},
            "builtin": False,
            "state": "creating",
            "owner": S.me(),
            "busy": None,
            "holder": None,
            "ip4": None,
            "ip6": ip6_for(mid),
            "lower": None,
            "created": time.time(),
        }
        t.st["machines"][mid] = rec
    S.machine_dir(ctx.home, mid).mkdir(parents=True, exist_ok=True)
    _note(ctx.home, mid, f"create {name} ({image['distro']}:{image['version']}) requested")
    from .server import serve  # goes on if the client is killed, as OrbStack does

    return serve(ctx, mid, lambda: _create_work(ctx, mid, user, user_data, password), prefix=pre)


def _create_work(ctx: Ctx, mid: str, user: str, user_data: Any, password: str | None) -> None:
    rec: S.Record | None = None
    try:
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"][mid]
        ctx.inject(rec["name"], rec["image"])
        from . import images

        src = images.resolve(ctx, S.read(ctx.home), rec["image"])
        if src.note:
            _note(ctx.home, mid, src.note)
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"][mid]
            rec["lower"], rec["suite"], rec["source"] = str(src.path), src.suite, src.label
            if src.substituted:
                rec["substituted"] = src.note
        # the default user is set up while systemd boots (it needs files, not services)
        provisioning: list[subprocess.Popen[bytes]] = []

        def provision() -> None:
            _note(ctx.home, mid, "provisioning")
            provisioning.append(guest_root_popen(ctx.home, mid, PROVISION, user))

        holder, ip4 = start_machine(ctx, rec, while_booting=provision)
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"][mid]
            rec["holder"], rec["ip4"] = holder, ip4
        res = _finish(provisioning[0], timeout=600)
        if res.returncode != 0:
            raise SimError(
                f"create '{rec['name']}': setup: do initial setup: "
                + (res.stderr.decode(errors="replace").strip() or f"exit {res.returncode}")
            )
        if password:
            lines = f"root:{password}\n" + (f"{user}:{password}\n" if user != "root" else "")
            guest_root_sh(ctx.home, rec, "chpasswd", stdin=lines.encode())
        if user_data is not None:
            from .cloudinit import apply_user_data

            apply_user_data(ctx, rec, user, user_data, note=_note, guest_root_sh=guest_root_sh)
        with S.transaction(ctx.home) as t:
            r = t.st["machines"][mid]
            r["state"], r["owner"] = "running", None
            t.st["running"] = True
            if t.st.get("default") not in t.st["machines"]:
                t.st["default"] = mid
        _note(ctx.home, mid, "created")
    except BaseException:
        _abort(ctx, mid)
        raise


def _abort(ctx: Ctx, mid: str) -> None:
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
        for key in keys:
            rec = S.find(st, key, include_dead=True)
            if rec is None:
                raise _not_found(key)
            if S.effective_state(rec) == "creating":
                raise SimError("cannot transition from creating to deleting")
            if rec["id"] not in targets:
                targets.append(rec["id"])
    for mid in targets:
        name = st["machines"].get(mid, {}).get("name", mid)
        ctx.touch(name)
        _delete_one(ctx, mid, all_)


def _delete_one(ctx: Ctx, mid: str, all_: bool) -> None:
    while True:
        with S.transaction(ctx.home) as t:
            rec = t.st["machines"].get(mid)
            if rec is None:
                return  # gone already (a failed create that was cleaned up counts as deleted)
            st = rec["state"]
            if st == "creating":
                if all_:
                    return
                raise SimError("cannot transition from creating to deleting")
            busy = rec.get("busy")
            if busy:
                raise SimError(f"cannot delete: operations are in progress: {busy['op']}")
            if st in ("running", "stopped"):
                rec["state"] = "deleting"
                rec["owner"] = S.me()
                break
        _settle(ctx, mid)
    try:
        ctx.inject(rec["name"])
    except BaseException:
        with S.transaction(ctx.home) as t:
            r = t.st["machines"].get(mid)
            if r is not None:
                r["owner"] = None
                r["state"] = "running" if S.alive(r.get("holder")) else "stopped"
        raise
    stop_machine(ctx.home, rec, kill=True)  # its data is thrown away: no clean shutdown
    with S.transaction(ctx.home) as t:
        r = t.st["machines"].get(mid)
        if r is not None:
            t.discard_machine(r)


# ---------------------------------------------------------------- rename / clone


def rename(ctx: Ctx, old: str, new: str) -> None:
    import subprocess

    found = S.find(S.read(ctx.home), old)
    if found is None:
        raise _not_found(old)
    ctx.touch(found["name"])
    ctx.inject(found["name"])  # a hang holds no lock: the rename has not begun
    with S.transaction(ctx.home) as t:
        rec = S.find(t.st, old)
        if rec is None:
            raise _not_found(old)
        ctx.touch(rec["name"])
        ctx.touch(new)
        if new == rec["name"]:
            return
        if not valid_name(new):
            raise SimError(f"invalid machine name '{new}'")
        if S.find(t.st, new) is not None:
            raise SimError(f"machine '\"{new}\"' already exists")
        if rec["state"] in ("creating", "deleting"):
            raise SimError(f"cannot transition from {rec['state']} to renaming")
        busy = rec.get("busy")
        if busy:
            raise SimError(f"cannot rename: operations are in progress: {busy['op']}")
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


def _copy_tree(src: Path, dst: Path) -> None:
    import subprocess

    res = subprocess.run(
        ["cp", "-a", "--reflink=auto", str(src), str(dst)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if res.returncode != 0:
        raise SimError("clone: copy data: " + res.stderr.decode(errors="replace").strip())


def clone(ctx: Ctx, old: str, new: str) -> int:
    ctx.touch(new)
    with S.transaction(ctx.home) as t:
        src = S.find(t.st, old)
        if src is None:
            raise _not_found(old)
        ctx.touch(src["name"])
        if not valid_name(new):
            raise SimError(f"invalid machine name '{new}'")
        if S.find(t.st, new) is not None:
            raise SimError(f"machine already exists: '{new}'")
        if src["state"] in ("creating", "deleting"):
            raise SimError(f"cannot transition from {src['state']} to cloning")
        busy = src.get("busy")
        if busy:
            raise SimError(f"cannot clone: operations are in progress: {busy['op']}")
        mid = S.new_id()
        src["busy"] = {"op": "clone", **S.me()}
        rec: S.Record = {
            "id": mid,
            "name": new,
            "image": dict(src["image"]),
            "config": dict(src["config"]),
            "builtin": False,
            "state": "creating",
            "owner": S.me(),
            "busy": None,
            "holder": None,
            "ip4": None,
            "ip6": ip6_for(mid),
            "lower": src["lower"],
            "created": time.time(),
        }
        for k in ("suite", "source", "substituted"):
            if src.get(k):
                rec[k] = src[k]
        t.st["machines"][mid] = rec
        src_id, src_name = src["id"], src["name"]
    S.machine_dir(ctx.home, mid).mkdir(parents=True, exist_ok=True)
    _note(ctx.home, mid, f"clone of {old} requested")

    def work() -> None:
        try:
            with S.transaction(ctx.home) as t:
                s = t.st["machines"].get(src_id)
                if s is not None and s.get("busy"):
                    s["busy"] = {"op": "clone", **S.me()}
            ctx.inject(src_name)
            mdir = S.machine_dir(ctx.home, mid)
            src_upper = S.machine_dir(ctx.home, src_id) / "upper"
            if src_upper.exists():
                _copy_tree(src_upper, mdir / "upper")
            (mdir / "upper").mkdir(exist_ok=True)
            reset_identity(mdir / "upper")  # own machine-id; hostname written at its start
            with S.transaction(ctx.home) as t:
                r = t.st["machines"][mid]
                r["state"], r["owner"] = "stopped", None
                s = t.st["machines"].get(src_id)
                if s is not None:
                    s["busy"] = None
            _note(ctx.home, mid, "cloned")
        except BaseException:
            with S.transaction(ctx.home) as t:
                s = t.st["machines"].get(src_id)
                if s is not None:
                    s["busy"] = None
            _abort(ctx, mid)
            raise

    from .server import serve  # goes on if the client is killed, as OrbStack does

    return serve(ctx, mid, work)


# ---------------------------------------------------------------- export / import

CONFIG_MEMBER = "_orbstack/config.v1.json"
BAD_ARCHIVE = (
    "can't find '_orbstack/config.v1.json' in archive. is this a valid OrbStack machine export?"
)


def export(ctx: Ctx, key: str, out: Path) -> None:
    with S.transaction(ctx.home) as t:
        rec = S.find(t.st, key)
        if rec is None:
            raise _not_found(key)
        ctx.touch(rec["name"])
        if rec["state"] in ("creating", "deleting"):
            raise SimError(f"cannot transition from {rec['state']} to exporting")
        busy = rec.get("busy")
        if busy:
            raise SimError(f"cannot export: operations are in progress: {busy['op']}")
        rec["busy"] = {"op": "export", **S.me()}
        snap = dict(rec)
    try:
        ctx.inject(snap["name"])
        _export_work(ctx, snap, out)
    finally:
        with S.transaction(ctx.home) as t:
            r = t.st["machines"].get(snap["id"])
            if r is not None:
                r["busy"] = None


def _export_work(ctx: Ctx, rec: S.Record, out: Path) -> None:
    import shutil
    import subprocess

    mdir = S.machine_dir(ctx.home, rec["id"])
    staging = mdir / f"export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "_orbstack").mkdir(parents=True)
    cfg = {
        "version": 1,
        "record": public_record(rec, "stopped"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host_uid": os.getuid(),
        "host_gid": os.getgid(),
        "source_fs": "overlay",
        "subvolumes": [{"path": "rootfs", "id": rec["id"]}],
    }
    (staging / CONFIG_MEMBER).write_text(json.dumps(cfg, indent=2) + "\n")
    copt, _ = rootfs.compressor()
    if out.name.endswith((".gz", ".tgz")):
        copt = ["-z"]
    elif out.name.endswith(".zst") and shutil.which("zstd"):
        copt = ["-I", "zstd -T0 -3"]
    tmp_out = out.with_name(out.name + f".{os.getpid()}.part")
    tar_tail = [
        "tar",
        *copt,
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--warning=no-file-changed",
        "-cf",
        str(tmp_out),
        "-C",
        str(staging),
        "_orbstack",
        "--one-file-system",
        "--exclude=./etc/resolv.conf",
        "--transform=s,^\\.,rootfs,S",
    ]
    holder = rec.get("holder") if rec["state"] == "running" else None
    try:
        if holder and S.alive(holder):
            argv = [*tar_tail, "-C", f"/proc/{holder['pid']}/root", "."]
        else:
            mnt = mdir / f"export-mnt-{os.getpid()}"
            mnt.mkdir(exist_ok=True)
            lower = rec["lower"]
            upper = mdir / "upper"
            script = 'mount -t overlay overlay -o "lowerdir=$1" "$2" && shift 2 && exec "$@"'
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                script,
                "sh",
                f"{upper}:{lower}",
                str(mnt),
                *tar_tail,
                "-C",
                str(mnt),
                ".",
            ]
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        if res.returncode not in (0, 1):
            raise SimError("export: " + res.stderr.decode(errors="replace").strip())
        os.replace(tmp_out, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            tmp_out.unlink()
        for p in mdir.glob(f"export-mnt-{os.getpid()}"):
            with contextlib.suppress(OSError):
                p.rmdir()


def read_export_config(archive: Path) -> dict[str, Any]:
    import subprocess

    try:
        dopts = rootfs.decompress_opts(archive)
    except FileNotFoundError:
        raise SimError(f"open {archive}: no such file or directory") from None
    except rootfs.RootfsError as exc:
        raise SimError(str(exc)) from None
    res = subprocess.run(
        ["tar", *dopts, "-xOf", str(archive), "--occurrence=1", CONFIG_MEMBER],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if res.returncode != 0 or not res.stdout.strip():
        raise SimError(BAD_ARCHIVE)
    try:
        cfg: dict[str, Any] = json.loads(res.stdout)
        cfg["record"]["name"]
    except (ValueError, KeyError, TypeError):
        raise SimError(BAD_ARCHIVE) from None
    return cfg


def import_(ctx: Ctx, archive: Path, name: str | None) -> None:
    import shutil

    cfg = read_export_config(archive)
    record = cfg["record"]
    name = name or record["name"]
    ctx.touch(name)
    if not valid_name(name):
        raise SimError(f"invalid machine name '{name}'")
    require_host()
    img = record.get("image") or {}
    image = {
        "distro": img.get("distro", "debian"),
        "version": img.get("version", "bookworm"),
        "arch": img.get("arch", "amd64"),
        "variant": img.get("variant", "default"),
    }
    with S.transaction(ctx.home) as t:
        if S.find(t.st, name) is not None:
            raise SimError(f"machine already exists: '{name}'")
        mid = S.new_id()
        t.st["machines"][mid] = {
            "id": mid,
            "name": name,
            "image": image,
            "config": dict(record.get("config") or {"isolated": False, "default_username": ""}),
            "builtin": False,
            "state": "creating",
            "owner": S.me(),
            "busy": None,
            "holder": None,
            "ip4": None,
            "ip6": ip6_for(mid),
            "lower": None,
            "created": time.time(),
        }
    try:
        ctx.inject(name)
        imgdir = ctx.home / "images" / mid
        rootfs.extract_tar(archive, imgdir / "rootfs", ["--strip-components=1", "rootfs"])
        if not (imgdir / "rootfs" / "etc").is_dir():
            raise SimError(BAD_ARCHIVE)
        for sub in ("proc", "sys", "dev", "run", "tmp"):
            (imgdir / "rootfs" / sub).mkdir(exist_ok=True)
        mdir = S.machine_dir(ctx.home, mid)
        (mdir / "upper").mkdir(parents=True, exist_ok=True)
        reset_identity(mdir / "upper")  # an imported machine is a new machine
        with S.transaction(ctx.home) as t:
            r = t.st["machines"][mid]
            r["state"], r["owner"], r["lower"] = "stopped", None, str(imgdir / "rootfs")
            key = f"{image['distro']}:{image['version']}:{image['arch']}"
            t.st.setdefault("images", {})[key] = str(imgdir / "rootfs")
        _note(ctx.home, mid, f"imported from {archive}")
    except BaseException:
        _abort(ctx, mid)
        shutil.rmtree(ctx.home / "images" / mid, ignore_errors=True)
        raise


def import_rootfs(ctx: Ctx, image: dict[str, str], tarball: Path) -> Path:
    """``sim-import-rootfs``: register a root filesystem tarball as the base of an image."""
    import shutil

    if not tarball.exists():
        raise SimError(f"open {tarball}: no such file or directory")
    iid = S.new_id()
    dest = ctx.home / "images" / iid / "rootfs"
    rootfs.extract_tar(tarball, dest)
    if not (dest / "etc").is_dir():
        shutil.rmtree(dest.parent, ignore_errors=True)
        raise SimError(f"{tarball}: not a root filesystem (no etc/ at the top)")
    for sub in ("proc", "sys", "dev", "run", "tmp"):
        (dest / sub).mkdir(exist_ok=True)
    with S.transaction(ctx.home) as t:
        key = f"{image['distro']}:{image['version']}:{image['arch']}"
        t.st.setdefault("images", {})[key] = str(dest)
    return dest
