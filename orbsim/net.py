"""orbsim's own network: a bridge, dnsmasq (DNS for ``NAME.orb.local`` + DHCP), NAT.

OrbStack gives every machine its own address on 192.168.139.0/24, reachable from the host,
with ``NAME.orb.local`` names between machines and NAT to the outside.  orbsim does the same
with host-global pieces that all orbsim homes on the host share:

* a bridge (``$ORBSIM_BRIDGE``, default ``orbsim0``) holding the gateway address (first host
  of ``$ORBSIM_SUBNET``, default ``192.168.139.0/24``);
* one nft table, ``inet orbsim``: accept DNS/DHCP from the bridge, accept forwarding to and
  from the bridge, masquerade the subnet's traffic to anywhere else;
* ``net.ipv4.ip_forward`` = 1 (the previous value is recorded and restored);
* one ``dnsmasq`` bound to the bridge only: DNS for ``NAME.orb.local`` (``--hostsdir``, one
  file per running machine, re-read by dnsmasq through inotify), forwarding other names to the
  host's resolvers; DHCP that hands every machine the address orbsim reserved for its MAC
  (``--dhcp-hostsdir``), for guests whose own network manager insists on DHCP;
* on hosts whose firewall drops forwarded traffic (Docker sets ``FORWARD`` to ``DROP``), two
  rules scoped to the bridge in each such chain (``DOCKER-USER`` when the table has one),
  tagged with the comment ``orbsim``.

Addresses are static: LXC configures the machine's ``eth0`` (address, default route) before
init runs, so a machine has its address the moment it starts, whatever its distro. The
allocation is a file per address under the runtime directory (``$ORBSIM_RUNDIR``, default
``/run/orbsim``), created with ``O_EXCL`` under the network lock; a lease names the machine's
home, LXC path and id, the orbsim process starting it (``owner``) and, once started, the
machine's init process. A lease whose owner and init are both dead, or whose home directory is
gone, is stale and pruned (a container left running by a killed ``orbsim start``, or by a home
deleted under a running machine, is stopped first: by ``lxc-stop -k``, else by killing what is
in its cgroups). When the last live lease goes, everything above is removed: bridge, nft table
and rules, dnsmasq, the runtime files, and ``ip_forward`` goes back to what it was.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from . import firewall
from . import procs as S
from .errors import SimError
from .files import read_json, write_json, write_text
from .firewall import TABLE, run_tool

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    import subprocess
    from typing import Any

DEFAULT_SUBNET = "192.168.139.0/24"
DEFAULT_BRIDGE = "orbsim0"
DOMAIN = "orb.local"
_BRIDGE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")


def run_dir() -> Path:
    return Path(os.environ.get("ORBSIM_RUNDIR") or "/run/orbsim")


def net_dir() -> Path:
    return run_dir() / "net"


def wanted_config() -> tuple[str, ipaddress.IPv4Network]:
    bridge = os.environ.get("ORBSIM_BRIDGE") or DEFAULT_BRIDGE
    if not _BRIDGE_RE.match(bridge):
        raise SimError(f"ORBSIM_BRIDGE: invalid interface name {bridge!r}")
    raw = os.environ.get("ORBSIM_SUBNET") or DEFAULT_SUBNET
    try:
        subnet = ipaddress.IPv4Network(raw, strict=False)
    except ValueError as exc:
        raise SimError(f"ORBSIM_SUBNET: {exc}") from None
    if subnet.prefixlen > 28:
        raise SimError(f"ORBSIM_SUBNET: {raw} is too small (at most /28)")
    return bridge, subnet


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    from .locks import locked

    run_dir().mkdir(parents=True, exist_ok=True)
    d = net_dir()
    with locked(run_dir() / "net.lock", timeout=300):
        # made under the lock: the last machine's teardown removes it (also while we waited)
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)
        yield d


def _write_public(p: Path, text: str) -> None:
    """A file dnsmasq (running as its own user) reads."""
    write_text(p, text, mode=0o644)


# ---------------------------------------------------------------- the network itself


def current() -> dict[str, Any] | None:
    """The recorded state of the network that is up (None when it is down)."""
    return read_json(net_dir() / "net.json")


def bridge_exists(bridge: str) -> bool:
    return Path("/sys/class/net", bridge).exists()


def _dnsmasq_user() -> str:
    import pwd

    for user in ("dnsmasq", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    return "root"


def _dnsmasq_alive(info: dict[str, Any]) -> bool:
    ident = info.get("dnsmasq")
    return S.alive(ident)


def _start_dnsmasq(d: Path, bridge: str, subnet: ipaddress.IPv4Network) -> subprocess.Popen[bytes]:
    """Start dnsmasq (it daemonizes: the process returned exits once the daemon runs)."""
    import subprocess

    hosts = list(subnet.hosts())
    gw = str(hosts[0])
    for sub in ("hosts", "dhcp-hosts"):
        (d / sub).mkdir(exist_ok=True)
        os.chmod(d / sub, 0o755)
    pidfile = d / "dnsmasq.pid"
    with contextlib.suppress(OSError):
        pidfile.unlink()
    lo, hi = pool(subnet)[0], pool(subnet)[-1]
    argv = [
        "dnsmasq",
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-ping",
        "-u",
        _dnsmasq_user(),
        "--strict-order",
        "--bind-interfaces",
        f"--pid-file={pidfile}",
        f"--listen-address={gw}",
        f"--interface={bridge}",
        "--except-interface=lo",
        f"--dhcp-range={lo},{hi},{subnet.netmask},1h",
        f"--dhcp-lease-max={len(hosts)}",
        "--dhcp-no-override",
        "--dhcp-authoritative",
        f"--dhcp-leasefile={d / 'dnsmasq.leases'}",
        f"--dhcp-hostsdir={d / 'dhcp-hosts'}",
        f"--hostsdir={d / 'hosts'}",
        f"--domain={DOMAIN}",
        f"--local=/{DOMAIN}/",
    ]
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _dnsmasq_started(d: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Wait for :func:`_start_dnsmasq`'s process; return the daemon's identity."""
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        msg = (err or out).decode(errors="replace").strip()
        raise SimError(f"network: dnsmasq: {msg or f'exit {proc.returncode}'}")
    pidfile = d / "dnsmasq.pid"
    deadline = time.monotonic() + 5
    pid = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            break
        time.sleep(0.002)
    if pid is None:
        raise SimError("network: dnsmasq did not write its pid file")
    return {"pid": pid, "start": S.proc_start_time(pid)}


def _up(d: Path) -> dict[str, Any]:
    """Bring the network up (or repair a partial one); return its record.  Lock held."""
    info = current()
    if info is None:
        bridge, subnet = wanted_config()
        info = {"bridge": bridge, "subnet": str(subnet), "forward_orig": None, "forward_rules": []}
    bridge = info["bridge"]
    if (
        info.get("table")
        and info.get("forward_orig") is not None
        and _dnsmasq_alive(info)
        and bridge_exists(bridge)
    ):
        return info  # up and complete (dnsmasq is started last): nothing to check or write
    subnet = ipaddress.IPv4Network(info["subnet"])
    gw = str(next(subnet.hosts()))
    # write-ahead: what is about to change is recorded first, so that an orbsim killed half way
    # through still leaves a record from which the next call undoes everything
    if info.get("forward_orig") is None:
        fwd = Path("/proc/sys/net/ipv4/ip_forward")
        info["forward_orig"] = fwd.read_text().strip()
        write_json(d / "net.json", info)
        if info["forward_orig"] != "1":
            fwd.write_text("1\n")
    if not bridge_exists(bridge):
        info["bridge_made"] = True
        write_json(d / "net.json", info)
        run_tool(
            ["ip", "-batch", "-"],
            stdin=f"link add {bridge} type bridge\n"
            f"addr add {gw}/{subnet.prefixlen} dev {bridge}\n"
            f"link set {bridge} up\n",
        )
    # dnsmasq (it needs the bridge) starts while the firewall is set up
    dns = None if _dnsmasq_alive(info) else _start_dnsmasq(d, bridge, subnet)
    try:
        # the table's rules are (re)made in one transaction: one left by a killed orbsim is
        # emptied first (no separate listing; deleting a table would cost a grace period)
        run_tool(
            ["nft", "-f", "-"],
            stdin=f"add table inet {TABLE}\nflush table inet {TABLE}\n"
            + firewall.nft_rules(bridge, subnet),
        )
        firewall.close_forward(info.get("forward_rules") or [])
        info["forward_rules"] = firewall.open_forward(bridge)
        info["table"] = True
    finally:
        if dns is not None:
            info["dnsmasq"] = _dnsmasq_started(d, dns)
    write_json(d / "net.json", info)
    return info


def _spawn_quiet(argv: list[str]) -> subprocess.Popen[bytes]:
    import subprocess

    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _down(d: Path, info: dict[str, Any]) -> None:
    """Remove everything the network added to the host.  Lock held."""
    import shutil

    ident = info.get("dnsmasq")
    if not S.alive(ident):  # started by an orbsim killed before it recorded it: its pid file
        with contextlib.suppress(OSError, ValueError):
            pid = int((d / "dnsmasq.pid").read_text().strip())
            if str(d / "dnsmasq.pid").encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                ident = {"pid": pid, "start": S.proc_start_time(pid)}
    S.kill_ident(ident, signal.SIGTERM)
    # the pieces go in parallel: deleting a bridge mostly waits for the kernel (RCU grace
    # periods), so the table and dnsmasq go meanwhile; a missing table or bridge is no error
    bridge = info.get("bridge")
    procs = [_spawn_quiet(["nft", "delete", "table", "inet", TABLE])]
    if bridge and bridge_exists(bridge):
        procs.append(_spawn_quiet(["ip", "link", "del", bridge]))
    firewall.close_forward(info.get("forward_rules") or [])
    if ident is not None and not S.wait_exit(ident, 5):
        S.kill_ident(ident, signal.SIGKILL)
    for proc in procs:
        S.wait_child(proc, 30)
    orig = info.get("forward_orig")
    if orig is not None and orig != "1":
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text(orig + "\n")
    shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir().rmdir()  # only when empty (nothing else of orbsim's lives there)
    # LXC's shared, empty helper cgroup (recreated on demand; in use = not empty = kept)
    from . import lxc

    for mnt in lxc.cgroup_mounts():
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(mnt, "lxc.pivot"))


# ---------------------------------------------------------------- addresses


def pool(subnet: ipaddress.IPv4Network) -> list[str]:
    """Addresses machines get: .10-.247 of a /24 (as OrbStack), proportionally otherwise."""
    hosts = [str(h) for h in subnet.hosts()][1:]  # the first host is the gateway
    if len(hosts) > 40:
        return hosts[8:-7]
    return hosts


def mac_for(mid: str) -> str:
    import hashlib

    h = hashlib.sha256(mid.encode()).digest()
    return "02:0b:" + ":".join(f"{b:02x}" for b in h[:4])


def _lease_alive(lease: dict[str, Any]) -> bool:
    if not Path(lease.get("home") or "/nonexistent").is_dir():
        return False  # its home was deleted under it: nobody can ever stop it but us
    return S.alive(lease.get("owner")) or S.alive(lease.get("init"))


def _prune(d: Path) -> list[dict[str, Any]]:
    """Drop stale leases (stopping containers a killed start left behind); return live ones."""
    live: list[dict[str, Any]] = []
    ldir = d / "leases"
    if not ldir.is_dir():
        return live
    for p in sorted(ldir.iterdir()):
        lease = read_json(p)
        if lease is not None and _lease_alive(lease):
            live.append(lease)
            continue
        if lease is not None:
            from . import lxc

            lxc.reap(Path(lease["lxcpath"]), lease["id"])
        _drop_files(d, p.name)
    return live


def _drop_files(d: Path, ip: str) -> None:
    for sub in ("leases", "hosts", "dhcp-hosts"):
        with contextlib.suppress(OSError):
            (d / sub / ip).unlink()


def _dns_names(name: str) -> str:
    return f"{name}.{DOMAIN} {name}"


def acquire(home: Path, lxcpath: Path, mid: str, name: str) -> dict[str, Any]:
    """Bring the network up if needed and reserve an address for a machine about to start.

    Returns ``{"ip", "prefix", "gateway", "bridge", "mac", "dns"}``.
    """
    import hashlib

    with _locked() as d:
        _prune(d)
        info = _up(d)
        subnet = ipaddress.IPv4Network(info["subnet"])
        (d / "leases").mkdir(exist_ok=True)
        mine = None
        for p in (d / "leases").iterdir():
            lease = read_json(p)
            if lease and lease.get("id") == mid and lease.get("home") == str(home):
                mine = p.name
        addrs = pool(subnet)
        if mine is None:
            h = int(hashlib.sha256(mid.encode()).hexdigest()[:8], 16)
            for i in range(len(addrs)):
                cand = addrs[(h + i) % len(addrs)]
                try:
                    fd = os.open(d / "leases" / cand, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                os.close(fd)
                mine = cand
                break
            else:
                raise SimError(f"network: no free address left in {subnet}")
        mac = mac_for(mid)
        write_json(
            d / "leases" / mine,
            {
                "ip": mine,
                "home": str(home),
                "lxcpath": str(lxcpath),
                "id": mid,
                "name": name,
                "mac": mac,
                "owner": S.me(),
                "init": None,
            },
        )
        _write_public(d / "hosts" / mine, f"{mine} {_dns_names(name)}\n")
        _write_public(d / "dhcp-hosts" / mine, f"{mac},{mine},{name}\n")
        gw = str(next(subnet.hosts()))
        return {
            "ip": mine,
            "prefix": subnet.prefixlen,
            "gateway": gw,
            "bridge": info["bridge"],
            "mac": mac,
            "dns": gw,
        }


def started(home: Path, mid: str, init: dict[str, Any]) -> None:
    """The machine runs: its lease now lives as long as its init process."""
    with _locked() as d:
        for p in (d / "leases").iterdir() if (d / "leases").is_dir() else []:
            lease = read_json(p)
            if lease and lease.get("id") == mid and lease.get("home") == str(home):
                lease["init"] = init
                lease["owner"] = None
                write_json(p, lease)


def rename(home: Path, mid: str, name: str) -> None:
    """DNS follows a rename of a running machine."""
    with _locked() as d:
        for p in (d / "leases").iterdir() if (d / "leases").is_dir() else []:
            lease = read_json(p)
            if lease and lease.get("id") == mid and lease.get("home") == str(home):
                lease["name"] = name
                write_json(p, lease)
                _write_public(d / "hosts" / p.name, f"{p.name} {_dns_names(name)}\n")
                _write_public(d / "dhcp-hosts" / p.name, f"{lease['mac']},{p.name},{name}\n")


def release(home: Path, mid: str) -> None:
    """The machine stopped: free its address; the last one out takes the network down."""
    if not net_dir().exists():
        return
    with _locked() as d:
        for p in list((d / "leases").iterdir()) if (d / "leases").is_dir() else []:
            lease = read_json(p)
            if lease and lease.get("id") == mid and lease.get("home") == str(home):
                _drop_files(d, p.name)
        _maybe_down(d)


def _maybe_down(d: Path) -> None:
    if _prune(d):
        return
    info = current()
    if info is not None:
        _down(d, info)
    else:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def gc() -> None:
    """Prune stale leases; take the network down when nothing uses it any more."""
    if not net_dir().exists():
        return
    with _locked() as d:
        _maybe_down(d)
