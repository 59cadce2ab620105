"""What LXC machines are: systemd as PID 1, their own network and identity, no way into the host.

Every test here runs real machines.  Nothing here asserts a duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from orbsim import firewall, lxc, net
from tests.orbsim.conftest import Sim

# a one-file HTTP server (perl-base is in every Debian minbase): answers every request with
# BODY, run by systemd as a transient service
PERL_HTTPD = r"""
use IO::Socket::INET;
my $body = shift;
my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 16, ReuseAddr => 1) or die "$!";
while (my $c = $s->accept) {
    while (my $l = <$c>) { last if $l =~ /^\r?\n$/ }
    print $c "HTTP/1.0 200 OK\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    close $c;
}
"""


def root(sim: Sim, name: str, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return sim("run", "-m", name, "-u", "root", *argv, **kw)  # type: ignore[arg-type]


def serve(sim: Sim, name: str, body: str) -> None:
    sim.ok(
        "run", "-m", name, "-u", "root",
        "systemd-run", "--unit", "web", "--property", "Restart=always",
        "perl", "-e", PERL_HTTPD, body,
    )  # fmt: skip
    # wait until the service listens (systemd-run returns once the unit started)
    for _ in range(200):
        if root(sim, name, "sh", "-c", "ss -ltn | grep -q ':80 '").returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name}: nothing listens on :80")


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=20) as resp:
        return str(resp.read().decode())


def machine_id(sim: Sim, name: str) -> str:
    return sim.ok("run", "-m", name, "cat", "/etc/machine-id").stdout.strip()


def test_systemd_is_pid1_and_systemctl_works(sim: Sim, machine: str) -> None:
    assert root(sim, machine, "ps", "-p", "1", "-o", "comm=").stdout.strip() == "systemd"
    state = root(sim, machine, "systemctl", "is-system-running").stdout.strip()
    assert state in ("running", "degraded"), root(sim, machine, "systemctl", "--failed").stdout
    assert root(sim, machine, "systemctl", "--failed", "--no-legend").stdout.strip() == ""
    assert root(sim, machine, "systemctl", "is-active", "systemd-journald").stdout == "active\n"
    # a unit installed at runtime starts, stops and is enabled like on any systemd machine
    unit = (
        "[Service]\nType=simple\nExecStart=/bin/sleep infinity\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    sim.ok("run", "-m", machine, "-u", "root", "sh", "-c", 'cat > /etc/systemd/system/nap.service',
           input=unit)  # fmt: skip
    root(sim, machine, "systemctl", "daemon-reload")
    assert root(sim, machine, "systemctl", "enable", "--now", "nap").returncode == 0
    assert root(sim, machine, "systemctl", "is-active", "nap").stdout == "active\n"
    assert root(sim, machine, "systemctl", "is-enabled", "nap").stdout == "enabled\n"
    root(sim, machine, "systemctl", "stop", "nap")
    assert root(sim, machine, "systemctl", "is-active", "nap").stdout == "inactive\n"
    mid = machine_id(sim, machine)
    assert len(mid) == 32 and int(mid, 16) > 0
    assert sim.ok("run", "-m", machine, "hostname").stdout == f"{machine}\n"


def test_start_waits_for_boot_and_reports_starting(sim: Sim) -> None:
    """A unit that holds the boot up: ``start`` returns only when systemd says the boot is
    over, and while it boots ``info``/``list`` say ``starting``."""
    name = sim.create()
    unit = (
        "[Unit]\nDescription=slow boot\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        "ExecStart=/bin/sh -c 'while [ ! -e /run/go ]; do sleep 0.1; done'\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    sim.ok("run", "-m", name, "-u", "root", "sh", "-c", "cat > /etc/systemd/system/slow.service",
           input=unit)  # fmt: skip
    root(sim, name, "systemctl", "enable", "slow")
    sim.ok("stop", name)
    proc = subprocess.Popen(
        [sim.exe(), "start", name], env=sim.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert sim.wait_state(name, "starting", 30) == "starting"
        assert sim.json("info", name, "-f", "json")["record"]["state"] == "starting"
        assert proc.poll() is None  # still booting: slow.service waits for /run/go
        # the machine runs already (run waits for no one): release the boot
        holder = json.loads((sim.home / "state.json").read_text())
        pid = next(r for r in holder["machines"].values() if r["name"] == name)["holder"]["pid"]
        Path(f"/proc/{pid}/root/run/go").write_text("")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert sim.state(name) == "running"
    assert root(sim, name, "systemctl", "is-active", "slow").stdout == "active\n"
    sim.ok("delete", "-f", name)


def test_two_machines_own_addresses_same_port_and_names(sim: Sim) -> None:
    a, b = sim.create(sim.name("web")), sim.create(sim.name("web"))
    ia = sim.json("info", a, "-f", "json")["ip4"]
    ib = sim.json("info", b, "-f", "json")["ip4"]
    assert ia != ib and ia.startswith("192.168.139.") and ib.startswith("192.168.139.")
    # info's ip4 is the machine's real address
    assert f"inet {ia}/" in root(sim, a, "ip", "-4", "addr", "show", "eth0").stdout
    serve(sim, a, f"hello from {a}")
    serve(sim, b, f"hello from {b}")  # the same port in both, at the same time
    assert http_get(f"http://{ia}/") == f"hello from {a}"  # the host reaches both
    assert http_get(f"http://{ib}/") == f"hello from {b}"
    # machine to machine by NAME.orb.local (orbsim's DNS)
    got = sim.ok("run", "-m", a, "curl", "-fsS", f"http://{b}.orb.local/").stdout
    assert got == f"hello from {b}"
    assert sim.ok("run", "-m", b, "getent", "hosts", f"{a}.orb.local").stdout.split()[0] == ia
    sim.ok("delete", "-f", a, b)


def test_clones_of_a_booted_machine_get_their_own_identity(sim: Sim) -> None:
    src = sim.create(sim.name("tpl"))
    sim.ok("run", "-m", src, "sh", "-c", "echo from-template > t.txt")
    src_id = machine_id(sim, src)
    clones = [sim.name("cl"), sim.name("cl")]
    for c in clones:
        sim.ok("clone", src, c)
    ids = {src_id}
    for c in clones:
        sim.ok("start", c)
        assert sim.ok("run", "-m", c, "cat", "t.txt").stdout == "from-template\n"
        assert sim.ok("run", "-m", c, "hostname").stdout == f"{c}\n"
        assert root(sim, c, "systemctl", "is-system-running").stdout.strip() in (
            "running",
            "degraded",
        )
        ids.add(machine_id(sim, c))
    assert len(ids) == 3  # template and both clones: three machine-ids
    sim.ok("delete", "-f", src, *clones)


# ---------------------------------------------------------------- no way into the host


def test_sysctl_in_a_machine_leaves_the_host_alone(sim: Sim, machine: str) -> None:
    host = Path("/proc/sys/fs/file-max").read_text().strip()
    other = str(int(host) - 1)
    res = root(sim, machine, "sysctl", "-w", f"fs.file-max={other}")
    assert res.returncode != 0
    assert Path("/proc/sys/fs/file-max").read_text().strip() == host
    res = root(sim, machine, "sh", "-c", f"echo {other} > /proc/sys/fs/file-max")
    assert res.returncode != 0 and Path("/proc/sys/fs/file-max").read_text().strip() == host
    # network settings are the machine's own (its own network namespace)
    host_fwd = Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text().strip()
    new = "4321" if host_fwd != "4321" else "4322"
    assert root(sim, machine, "sysctl", "-w", f"net.ipv4.tcp_keepalive_time={new}").returncode == 0
    assert root(sim, machine, "sysctl", "-n", "net.ipv4.tcp_keepalive_time").stdout.strip() == new
    assert Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text().strip() == host_fwd
    # no writable full /proc or /sys hidden under /dev/.lxc (LXC's nesting mounts)
    assert root(sim, machine, "test", "-e", "/dev/.lxc/proc").returncode == 1


def test_host_kernel_log_is_unreadable(sim: Sim, machine: str) -> None:
    res = root(sim, machine, "cat", "/proc/kmsg")
    assert res.returncode != 0 and "not permitted" in res.stderr
    assert root(sim, machine, "dmesg").returncode != 0
    capbnd = root(sim, machine, "grep", "CapBnd", "/proc/1/status").stdout.split()[1]
    caps = int(capbnd, 16)
    for cap in (16, 17, 25, 34):  # sys_module, sys_rawio, sys_time, syslog
        assert not caps & (1 << cap), f"capability {cap} not dropped"


def test_host_processes_are_invisible(sim: Sim, machine: str) -> None:
    marker = f"orbsim-marker-{os.getpid()}"
    host = subprocess.Popen(["sleep", "300", marker], stdin=subprocess.DEVNULL)
    try:
        out = root(sim, machine, "ps", "-eo", "args").stdout
        assert marker not in out
        assert "pytest" not in out
        assert len(out.splitlines()) < 15
    finally:
        host.kill()
        host.wait()


def test_host_interfaces_are_untouchable(sim: Sim, machine: str) -> None:
    links = root(sim, machine, "ip", "-o", "link").stdout
    names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
    assert names == ["eth0", "lo"]
    host_macs = {
        Path(f"/sys/class/net/{n}/address").read_text().strip()
        for n in os.listdir("/sys/class/net")
        if n != "lo"
    }
    assert not any(mac in links for mac in host_macs)
    bridge = net.current()
    assert bridge is not None
    res = root(sim, machine, "ip", "link", "set", bridge["bridge"], "down")
    assert res.returncode != 0
    assert "UP" in Path(f"/sys/class/net/{bridge['bridge']}/operstate").read_text().upper()


def _host_block_device() -> tuple[str, str]:
    for name in sorted(os.listdir("/sys/class/block")):
        dev = Path(f"/sys/class/block/{name}/dev")
        if dev.exists() and not name.startswith(("loop", "ram", "zram")):
            major, minor = dev.read_text().strip().split(":")
            return major, minor
    pytest.skip("no block device on this host")


def test_mounting_a_host_block_device_fails(sim: Sim, machine: str) -> None:
    major, minor = _host_block_device()
    script = (
        f"mknod /tmp/hostdisk b {major} {minor} && mkdir -p /mnt/h && mount /tmp/hostdisk /mnt/h"
    )
    res = root(sim, machine, "sh", "-c", script)
    assert res.returncode != 0
    assert root(sim, machine, "head", "-c", "512", "/tmp/hostdisk").returncode != 0
    assert root(sim, machine, "mountpoint", "-q", "/mnt/h").returncode != 0


# ---------------------------------------------------------------- host hygiene


def _leases_of(home: Path) -> list[dict[str, object]]:
    ldir = net.net_dir() / "leases"
    out = []
    if ldir.is_dir():
        for p in ldir.iterdir():
            try:
                lease = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if lease.get("home") == str(home):
                out.append(lease)
    return out


def _assert_nothing_left(sim: Sim, ids: list[str]) -> None:
    assert sim.holders() == []
    for mid in ids:
        assert lxc.cgroup_dirs(mid) == [], f"cgroups of {mid} left"
    assert _leases_of(sim.home) == []
    if not (net.net_dir() / "leases").is_dir() or not any((net.net_dir() / "leases").iterdir()):
        # nobody else (another xdist worker) uses the network: it must be gone entirely
        info = net.current()
        assert info is None
        assert not net.bridge_exists(os.environ.get("ORBSIM_BRIDGE") or net.DEFAULT_BRIDGE)
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        assert f"inet {net.TABLE}" not in tables.stdout


def _ids(sim: Sim) -> list[str]:
    try:
        st = json.loads((sim.home / "state.json").read_text())
    except (OSError, ValueError):
        return []
    return list(st["machines"])


def _wait_container(sim: Sim, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):
        if any(lxc.cgroup_dirs(m) for m in _ids(sim)) or proc.poll() is not None:
            return
        time.sleep(0.01)


@pytest.mark.parametrize("phase", ["create", "start"])
def test_sigkill_of_orbsim_leaves_nothing_behind(fresh_sim: Sim, phase: str) -> None:
    sim = fresh_sim
    name = sim.name("kill")
    if phase == "start":
        sim.create(name)
        sim.ok("stop", name)
        argv = [sim.exe(), "start", name]
    else:
        argv = [sim.exe(), "create", "debian", name]
    proc = subprocess.Popen(argv, env=sim.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_container(sim, proc)  # killed once its container exists (booting or provisioning)
    # the process doing the work: the client itself (start) or create's server process, which
    # OrbStack-like goes on when only its client is killed (orbsim/server.py)
    owners = {proc.pid}
    try:
        st = json.loads((sim.home / "state.json").read_text())
        for rec in st["machines"].values():
            if rec.get("owner"):
                owners.add(int(rec["owner"]["pid"]))
    except (OSError, ValueError):
        pass
    for pid in owners:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    ids = _ids(sim)
    # the next orbsim call settles the machine: gone (create) or stopped/running (start)
    listed = {r["name"]: r["state"] for r in sim.json("list", "-f", "json")}
    if phase == "create":
        assert name not in listed
        assert sim.holders() == []
    else:
        assert listed[name] in ("running", "stopped")
        if listed[name] == "running":  # the boot went on: a real, usable machine
            assert sim.ok("run", "-m", name, "true").returncode == 0
        else:
            assert sim.holders() == []
    sim.ok("delete", "-a", "-f")
    _assert_nothing_left(sim, ids)


def test_forward_drop_hosts_get_a_bridge_scoped_rule(sim: Sim, machine: str) -> None:
    """Docker's FORWARD DROP: orbsim's rules go into that chain, scoped to its bridge, and are
    removed again.  A private table stands in for Docker's here (its chain is deleted after)."""
    info = net.current()
    assert info is not None
    table = f"fwdtest{os.getpid()}"
    rules = (
        f"table ip {table} {{\n chain FORWARD {{\n"
        "  type filter hook forward priority 10; policy drop;\n }\n}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        assert ("ip", table, "FORWARD") in firewall.dropping_forward_chains()
        added_all = firewall.open_forward(info["bridge"])
        added = [r for r in added_all if r.get("table") == table]
        listing = subprocess.run(
            ["nft", "list", "chain", "ip", table, "FORWARD"], capture_output=True, text=True
        ).stdout
        assert f'iifname "{info["bridge"]}" accept comment "orbsim"' in listing
        assert len(added) == 2
        firewall.close_forward(added_all)
        listing = subprocess.run(
            ["nft", "list", "chain", "ip", table, "FORWARD"], capture_output=True, text=True
        ).stdout
        assert f'comment "{firewall.COMMENT}"' not in listing
    finally:
        subprocess.run(["nft", "delete", "table", "ip", table], check=False)


# ---------------------------------------------------------------- images and host check


def test_debian_release_is_the_one_asked_for(sim: Sim) -> None:
    name = sim.create(sim.name("trixie"), "debian:trixie")
    assert sim.ok("run", "-m", name, "cat", "/etc/debian_version").stdout.startswith("13")
    assert root(sim, name, "systemctl", "is-system-running").stdout.strip() in (
        "running",
        "degraded",
    )
    assert "SUBSTITUTED" not in sim.ok("info", name).stdout
    sim.ok("delete", "-f", name)


INDEX = "ubuntu;noble;amd64;default;20250101_00:00;/images/ubuntu/noble/amd64/default/1/\n"


class ImageServer(NamedTuple):
    url: str
    root: Path  # the served directory

    @property
    def files(self) -> tuple[Path, Path]:
        """The index and the one image's root filesystem."""
        return (
            self.root / "meta/1.0/index-system",
            self.root / "images/ubuntu/noble/amd64/default/1/rootfs.tar.xz",
        )


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[ImageServer]:
    """An LXC image server on the loopback address, serving an "ubuntu:noble" image that is
    the cached Debian base plus a marker file (built here; xz like the real server)."""
    import http.server
    import threading
    from functools import partial

    from orbsim import rootfs, state

    base = rootfs.ensure_base(state.cache_home())
    srv = tmp_path / "srv"
    img = srv / "images/ubuntu/noble/amd64/default/1"
    img.mkdir(parents=True)
    (srv / "meta/1.0").mkdir(parents=True)
    (srv / "meta/1.0/index-system").write_text(INDEX)
    extra = tmp_path / "extra"
    (extra / "etc").mkdir(parents=True)
    (extra / "etc/served-by").write_text("local image server\n")
    with open(img / "rootfs.tar.xz", "wb") as out:
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-cf", "-", "-C", str(base), ".", "-C", str(extra), "."],
            stdout=subprocess.PIPE,
        )
        subprocess.run(["xz", "-0", "-T2"], stdin=tar.stdout, stdout=out, check=True)
        assert tar.wait() == 0
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(srv))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ImageServer(f"http://127.0.0.1:{httpd.server_address[1]}", srv)
    finally:
        httpd.shutdown()
        thread.join()


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Path, Callable[[Path], None]]]:
    """A throw-away GnuPG signing key: its public keyring (binary, as ``gpg --export`` writes
    it) and a function writing ``FILE.asc``, a detached armored signature, as LXC's server has.
    """
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="orbgpg-", dir="/tmp"))  # short: gpg-agent's socket
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--quiet", "--passphrase", "", "--pinentry-mode", "loopback"]
    try:
        subprocess.run(
            [*gpg, "--quick-gen-key", "orbsim test <test@orbsim.invalid>", "ed25519", "sign",
             "never"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        ring = tmp_path / "keyring.gpg"
        ring.write_bytes(
            subprocess.run([*gpg, "--export"], env=env, check=True, capture_output=True).stdout
        )

        def sign(path: Path) -> None:
            subprocess.run(
                [*gpg, "--yes", "--armor", "--detach-sign", "-o", f"{path}.asc", str(path)],
                env=env, check=True, capture_output=True,
            )  # fmt: skip

        yield ring, sign
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _private_cache(path: Path) -> Path:
    """An image cache of its own (downloads land there); the Debian bases are shared."""
    from orbsim import state

    path.mkdir()
    (path / "base").symlink_to(state.cache_home() / "base")
    return path


def test_other_distros_come_from_an_image_server_or_are_substituted_visibly(
    sim: Sim, image_server: ImageServer, tmp_path: Path
) -> None:
    from orbsim import rootfs

    cache = _private_cache(tmp_path / "cache")
    env = {"ORBSIM_CACHE": str(cache), "ORBSIM_IMAGE_SERVER": image_server.url}
    name = sim.name("noble")
    sim.ok("create", "ubuntu:noble", name, env=env)
    assert sim.ok("run", "-m", name, "cat", "/etc/served-by").stdout == "local image server\n"
    assert root(sim, name, "systemctl", "is-system-running").stdout.strip() in (
        "running",
        "degraded",
    )
    assert "SUBSTITUTED" not in sim.ok("info", name).stdout
    version = rootfs.BASE_VERSION
    assert (cache / f"images/ubuntu-noble-amd64-{version}/ok").exists()  # fetched once, cached
    # nothing reachable: Debian stable stands in, and says so
    env["ORBSIM_IMAGE_SERVER"] = "http://127.0.0.1:9"
    other = sim.name("jammy")
    sim.ok("create", "ubuntu:jammy", other, env=env)
    info = sim.ok("info", other).stdout
    assert "SUBSTITUTED Debian bookworm (stable) for it" in info and "ubuntu:jammy" in info
    assert "SUBSTITUTED Debian bookworm" in sim.ok("logs", other).stdout
    assert sim.json("info", other, "-f", "json")["record"]["image"]["distro"] == "ubuntu"
    assert sim.ok("run", "-m", other, "cat", "/etc/debian_version").stdout.startswith("12")
    sim.ok("delete", "-f", name, other)


def test_downloaded_images_are_checked_against_a_keyring_when_one_is_given(
    sim: Sim,
    image_server: ImageServer,
    signer: tuple[Path, Callable[[Path], None]],
    tmp_path: Path,
) -> None:
    """With ``ORBSIM_IMAGE_KEYRING``, the index and the root filesystem need valid signatures
    by a key of that keyring; a missing or bad one fails the create with gpgv's words (no
    Debian stand-in, nothing cached), a good one gives the image asked for."""
    ring, sign = signer
    index, tarball = image_server.files
    env = {"ORBSIM_IMAGE_SERVER": image_server.url, "ORBSIM_IMAGE_KEYRING": str(ring)}

    def create(label: str, cache: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        name = sim.name(label)
        cache_env = {**env, "ORBSIM_CACHE": str(_private_cache(tmp_path / cache))}
        return name, sim("create", "ubuntu:noble", name, env=cache_env)

    name, res = create("unsigned", "c1")  # the server has no signatures at all
    assert res.returncode == 1
    assert "no signature for" in res.stderr and "index-system" in res.stderr, res.stderr
    assert "SUBSTITUTED" not in res.stderr and sim.state(name) is None

    sign(index)
    sign(tarball)
    good = tarball.read_bytes()
    tarball.write_bytes(good + b"tampered")  # signed, then changed on the mirror
    name, res = create("tampered", "c2")
    assert res.returncode == 1
    assert "signature check of" in res.stderr and "BAD signature" in res.stderr, res.stderr
    assert sim.state(name) is None
    assert not list((tmp_path / "c2" / "images").glob("ubuntu-noble-*/ok"))  # nothing cached

    tarball.write_bytes(good)
    name, res = create("signed", "c3")
    assert res.returncode == 0, res.stderr
    assert sim.ok("run", "-m", name, "cat", "/etc/served-by").stdout == "local image server\n"
    assert list((tmp_path / "c3" / "images").glob("ubuntu-noble-*-verified/ok"))
    sim.ok("delete", "-f", name)

    missing = {**env, "ORBSIM_IMAGE_KEYRING": str(tmp_path / "nowhere.gpg")}
    res = sim("create", "ubuntu:noble", sim.name("noring"), env=missing)
    assert res.returncode == 1 and "no keyring file at" in res.stderr, res.stderr


def test_doctor_says_this_host_can_run_machines(sim: Sim, tmp_path: Path) -> None:
    res = sim("doctor")
    assert res.returncode == 0, res.stdout
    assert "orbsim can run machines on this host" in res.stdout
    assert "LXC" in res.stdout and "cgroups" in res.stdout and "firewall" in res.stdout
    assert "checked by HTTPS only" in res.stdout
    # a keyring that is not there: Debian machines still run, other images would fail
    res = sim("doctor", env={"ORBSIM_IMAGE_KEYRING": str(tmp_path / "nowhere.gpg")})
    assert res.returncode == 0, res.stdout
    assert "no keyring file at" in res.stdout and "fix: gpg --export" in res.stdout
