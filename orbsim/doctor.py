"""``orbsim doctor``: can this host run orbsim machines, and if not, what fixes it.

Each check prints ``ok``, ``warn`` or ``FAIL`` with what was found and, when something is
missing, the command that fixes it.  Exit status 0 when machines can run (warnings allowed),
1 otherwise.  Nothing is changed on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import firewall, lxc, net, rootfs
from . import state as S

Check = tuple[str, str, str, str]  # (status, what, detail, fix)


def _cmd(argv: list[str]) -> tuple[int, str]:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, str(exc)
    return res.returncode, (res.stdout + res.stderr).strip()


def checks() -> list[Check]:
    out: list[Check] = []
    apt = "apt-get install -y --no-install-recommends lxc debootstrap"
    if not sys.platform.startswith("linux"):
        return [("FAIL", "Linux", f"this is {sys.platform}", "run orbsim on a Linux host")]
    out.append(("ok", "Linux", os.uname().release, ""))
    if os.geteuid() == 0:
        out.append(("ok", "root", "privileged LXC containers", ""))
    else:
        out.append(("FAIL", "root", f"uid {os.geteuid()}", "run orbsim (and pytest) as root/sudo"))
    # LXC
    missing = [
        t for t in ("lxc-start", "lxc-attach", "lxc-stop", "lxc-info") if not shutil.which(t)
    ]
    if missing:
        out.append(("FAIL", "LXC", "missing: " + " ".join(missing), apt))
    else:
        rc, ver = _cmd(["lxc-start", "--version"])
        out.append(("ok", "LXC", f"lxc {ver}", ""))
    if not os.path.exists(lxc.COMMON_CONF):
        out.append(
            ("FAIL", "LXC config", f"{lxc.COMMON_CONF} missing", "apt-get install --reinstall lxc")
        )
    # root filesystems
    if rootfs.base_available(S.cache_home()):
        out.append(("ok", "base image", str(rootfs.base_paths(S.cache_home())[1]), ""))
    elif shutil.which("debootstrap"):
        out.append(
            ("ok", "base image", "not built yet (debootstrap present)", "orbsim sim-prepare")
        )
    else:
        out.append(("FAIL", "base image", "no cached base and no debootstrap", apt))
    # overlayfs
    fs = Path("/proc/filesystems").read_text() if Path("/proc/filesystems").exists() else ""
    if "overlay" in fs:
        out.append(("ok", "overlayfs", "available", ""))
    else:
        rc, _ = _cmd(["modprobe", "-n", "overlay"])
        fix = "modprobe overlay" if rc == 0 else "use a kernel with overlayfs"
        status = "warn" if rc == 0 else "FAIL"
        out.append((status, "overlayfs", "not loaded", fix))
    # cgroups
    cg = lxc.cgroup_mounts()
    if not cg:
        out.append(
            ("FAIL", "cgroups", "no cgroup file system mounted", "mount cgroup2 on /sys/fs/cgroup")
        )
    else:
        kind = (
            "cgroup v2 only"
            if Path("/sys/fs/cgroup/cgroup.controllers").exists()
            else (
                "hybrid (v1 controllers + cgroup2)"
                if Path("/sys/fs/cgroup/unified").is_dir()
                else "v1"
            )
        )
        out.append(("ok", "cgroups", kind, ""))
    # network
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("dnsmasq", "dnsmasq-base")):
        if not shutil.which(tool):
            out.append(("FAIL", f"network: {tool}", "missing", f"apt-get install -y {pkg}"))
    if Path("/sys/module/bridge").exists() or _cmd(["modprobe", "-n", "bridge"])[0] == 0:
        out.append(("ok", "network: bridge", "bridge support available", ""))
    else:
        out.append(("FAIL", "network: bridge", "no bridge module", "modprobe bridge"))
    try:
        bridge, subnet = net.wanted_config()
        up = net.current()
        if up:
            out.append(("ok", "network", f"up: {up['bridge']} {up['subnet']}", ""))
        else:
            rc, routes = _cmd(["ip", "-4", "route", "show", "to", "match", str(subnet)])
            clash = [
                r
                for r in routes.splitlines()
                if r and not r.startswith("default") and bridge not in r
            ]
            if clash:
                out.append(
                    (
                        "warn",
                        "network",
                        f"{subnet} already routed: {clash[0]}",
                        "export ORBSIM_SUBNET=<another /24>",
                    )  # fmt: skip
                )
            else:
                out.append(("ok", "network", f"{bridge} {subnet} (made at the first start)", ""))
    except Exception as exc:  # a bad ORBSIM_SUBNET / ORBSIM_BRIDGE
        out.append(("FAIL", "network", str(exc), "fix ORBSIM_SUBNET / ORBSIM_BRIDGE"))
    # firewall
    drops = firewall.dropping_forward_chains() if shutil.which("nft") else []
    if drops:
        names = ", ".join(f"{f} {t} {c}" for f, t, c in drops)
        out.append(
            (
                "ok",
                "firewall",
                f"forward policy drop in {names}: orbsim adds bridge-scoped "
                "accept rules while its network is up",
                "",
            )  # fmt: skip
        )
    else:
        out.append(("ok", "firewall", "no forward-dropping chain seen by nft", ""))
    legacy = shutil.which("iptables-legacy")
    if legacy:
        rc, text = _cmd([legacy, "-S", "FORWARD"])
        if "-P FORWARD DROP" in text:
            out.append(("ok", "firewall (legacy)", "iptables-legacy FORWARD DROP: handled", ""))
    out.append(_images())
    # apparmor
    if Path("/sys/module/apparmor/parameters/enabled").exists():
        enabled = Path("/sys/module/apparmor/parameters/enabled").read_text().strip()
        if enabled == "Y" and not shutil.which("apparmor_parser"):
            out.append(("FAIL", "AppArmor", "enabled but apparmor_parser missing",
                        "apt-get install -y apparmor"))  # fmt: skip
        else:
            out.append(("ok", "AppArmor", f"enabled={enabled}", ""))
    return out


def _images() -> Check:
    """Other distros' images: from which server, and whether signatures are required."""
    from . import images

    srv = images.server()
    ring = os.environ.get("ORBSIM_IMAGE_KEYRING")
    if not ring:
        return ("ok", "images", f"{srv}, checked by HTTPS only", "")
    if not Path(ring).expanduser().is_file():
        return ("warn", "images", f"ORBSIM_IMAGE_KEYRING: no keyring file at {ring}",
                "gpg --export KEYID > FILE; export ORBSIM_IMAGE_KEYRING=FILE")  # fmt: skip
    if not shutil.which("gpgv"):
        return ("warn", "images", "ORBSIM_IMAGE_KEYRING is set but gpgv is missing",
                "apt-get install -y gpgv")  # fmt: skip
    return ("ok", "images", f"{srv}, signatures required (keyring {ring})", "")


def main() -> int:
    results = checks()
    width = max(len(w) for _, w, _, _ in results)
    for status, what, detail, fix in results:
        line = f"{status:<5} {what:<{width}}  {detail}"
        if fix and status != "ok":
            line += f"\n      {'':<{width}}  fix: {fix}"
        elif fix:
            line += f"  (next: {fix})"
        sys.stdout.write(line + "\n")
    failed = [w for s, w, _, _ in results if s == "FAIL"]
    if failed:
        sys.stdout.write(f"\norbsim cannot run machines here: {', '.join(failed)}\n")
        return 1
    sys.stdout.write("\norbsim can run machines on this host\n")
    return 0
