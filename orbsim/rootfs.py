"""The shared base root filesystems (one Debian minbase + systemd per release) and imports.

Cache layout (``$ORBSIM_CACHE``, default ``$XDG_CACHE_HOME/orbsim`` or ``~/.cache/orbsim``)::

    base.lock                                lock guarding builds/restores (locks.py)
    base/debian-<suite>-<arch>-v5/rootfs/    the extracted base (read-only overlay lower layer)
    base/debian-<suite>-<arch>-v5/ok         marker written last: the base is complete
    base/debian-<suite>-<arch>-v5.tar.zst    compressed copy (``.tar.gz`` without zstd) used to
                                             restore a deleted rootfs without network
    base/.build-*                            temporary build dirs (renamed into place atomically)

Each Debian release (bullseye, bookworm, trixie, ...) is built once with ``debootstrap
--variant=minbase --include=INCLUDE SUITE DIR $ORBSIM_MIRROR``: systemd as init (booted as
PID 1 by LXC), dbus, iproute2, sudo, procps, ca-certificates and curl (OrbStack's own setup
installs curl in Debian/Ubuntu machines).  Per-machine identity (machine-id, hostname) is not
baked in: orbsim writes it into each machine's own upper layer.  v4 = the first base with
systemd; v5 = v4 with more units and generators masked (:data:`MASK`), no credential mounts,
``/etc/.updated``; older bases are never reused.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BASE_VERSION = "v5"
SUITE = "bookworm"  # Debian stable: the default, and the visible substitute for other distros
# curl: OrbStack's setup installs it on Debian/Ubuntu machines (apt-get install -y curl);
# systemd + systemd-sysv + dbus: systemd is PID 1 of every machine
INCLUDE = "systemd,systemd-sysv,dbus,sudo,iproute2,iputils-ping,procps,ca-certificates,curl"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class RootfsError(Exception):
    pass


def mirror() -> str:
    return os.environ.get("ORBSIM_MIRROR") or DEFAULT_MIRROR


def _arch() -> str:
    from .distros import native_arch

    return native_arch()


def base_name(suite: str = SUITE) -> str:
    return f"debian-{suite}-{_arch()}-{BASE_VERSION}"


def base_paths(cache: Path, suite: str = SUITE) -> tuple[Path, Path, Path]:
    """(directory, rootfs, marker)"""
    d = cache / "base" / base_name(suite)
    return d, d / "rootfs", d / "ok"


def base_ready(cache: Path, suite: str = SUITE) -> bool:
    _, rootfs, marker = base_paths(cache, suite)
    return marker.exists() and (rootfs / "etc").is_dir()


def base_available(cache: Path, suite: str = SUITE) -> bool:
    """The base is extracted, or can be restored from its tarball without network."""
    return base_ready(cache, suite) or any(t.exists() for t in _tarballs(cache, suite))


def compressor() -> tuple[list[str], str]:
    """(tar compression option, file suffix): zstd when its binary exists, else gzip."""
    import shutil

    if shutil.which("zstd"):
        return ["-I", "zstd -T0 -3"], ".tar.zst"
    if shutil.which("pigz"):
        return ["-I", "pigz"], ".tar.gz"
    return ["-z"], ".tar.gz"


def decompress_opts(path: Path) -> list[str]:
    """tar options to read ``path`` (zstd, gzip or plain tar, detected by magic bytes)."""
    import shutil

    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"\x28\xb5\x2f\xfd":
        if not shutil.which("zstd"):
            raise RootfsError(f"{path}: zstd archive but no zstd binary installed")
        return ["-I", "zstd -d"]
    if magic[:2] == b"\x1f\x8b":
        return ["-z"]
    return []


def _tarballs(cache: Path, suite: str = SUITE) -> list[Path]:
    d = cache / "base"
    return [d / (base_name(suite) + sfx) for sfx in (".tar.zst", ".tar.gz")]


def _log(msg: str) -> None:
    sys.stderr.write(f"orbsim: {msg}\n")
    sys.stderr.flush()


def _run(argv: list[str], log_path: Path | None = None) -> None:
    import subprocess

    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        hint = f" (see {log_path})" if log_path else ""
        raise RootfsError(f"{' '.join(argv[:3])}… failed with exit code {proc.returncode}{hint}")


def configure_base(root: Path, mirror_url: str, suite: str = SUITE) -> None:
    """One-time configuration so machines work offline and per machine."""
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror_url} {suite} main\ndeb {mirror_url} {suite}-updates main\n"
    )
    prepare_systemd_root(root)
    # hostname and the machine line of /etc/hosts are written into each machine's upper layer
    (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
    )
    # resolv.conf is bind-mounted from the host at start; keep a placeholder file
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    resolv.write_text("# written into each machine at start (orbsim's DNS on its bridge)\n")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for binf in (root / "var/cache/apt").glob("*.bin"):
        binf.unlink()
    (root / "etc/sudoers.d").mkdir(exist_ok=True)
    (root / "etc/orbsim-release").write_text(
        f"orbsim base {base_name(suite)} built {time.ctime()}\n"
    )


# Units that make no sense in a machine whose network, clock, consoles, disks and kernel the
# host owns.  Masked since v4: the first eight; since v5 (a faster boot and poweroff: fewer
# jobs on systemd's critical chain, fewer processes): the rest.  Kept on purpose: journald
# (and its flush), dbus, logind, user-sessions (it lifts /run/nologin for logins), sysctl,
# tmpfiles, sysusers, mqueue, rc-local and init.d scripts, fstab mounts, the daily timers of
# dpkg and tmpfiles.
MASK = (
    "systemd-networkd-wait-online.service",
    "systemd-timesyncd.service",
    "console-getty.service",
    "getty@.service",
    "container-getty@.service",
    "systemd-firstboot.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    # v5
    "systemd-update-utmp.service",  # boot/shutdown records in utmp/wtmp (who -b, last reboot)
    "systemd-update-utmp-runlevel.service",  # runlevel records in utmp
    "systemd-remount-fs.service",  # the root is LXC's overlay: no fstab root entry to apply
    "dev-hugepages.mount",  # the host's huge pages
    "sys-fs-fuse-connections.mount",  # the host's fusectl
    "systemd-journald-audit.socket",  # the kernel audit log is the host's
    "systemd-pstore.service",  # the host kernel's pstore
    "systemd-ask-password-console.path",  # no console prompts
    "systemd-ask-password-wall.path",
    "e2scrub_reap.service",  # ext4/LVM scrubbing and TRIM: no block devices in a machine
    "e2scrub_all.timer",
    "fstrim.timer",
)
# Generators systemd runs at every boot (and daemon-reload) that only read what the host owns
# (kernel command line, disks, crypttab, consoles): masked since v5.  Kept: fstab, sysv
# (init.d scripts of packages), rc-local.
MASK_GENERATORS = (
    "systemd-cryptsetup-generator",
    "systemd-integritysetup-generator",
    "systemd-veritysetup-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-system-update-generator",
    "systemd-debug-generator",
    "systemd-run-generator",
    "systemd-getty-generator",
)


# Services that read credentials a VM or container manager may pass to the system
# (sysctl.extra, tmpfiles.extra, journal.*, ...).  LXC passes none, but systemd still mounts a
# /run/credentials/UNIT for each (and unmounts it with a /bin/umount process at poweroff): a
# drop-in empties their lists (since v5).
NO_CREDENTIALS = (
    "systemd-sysctl.service",
    "systemd-sysusers.service",
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-setup-dev-early.service",
    "systemd-tmpfiles-clean.service",
    "systemd-journald.service",
)
CREDENTIAL_KEYS = ("LoadCredential", "LoadCredentialEncrypted", "ImportCredential", "SetCredential")


def _drop_credentials(root: Path) -> None:
    for unit in NO_CREDENTIALS:
        text = ""
        for d in ("usr/lib/systemd/system", "lib/systemd/system"):
            f = root / d / unit
            if f.is_file() and not f.is_symlink():
                text = f.read_text(errors="replace")
                break
        keys = [k for k in CREDENTIAL_KEYS if f"\n{k}=" in "\n" + text]
        if not keys:
            continue
        dropin = root / "etc/systemd/system" / f"{unit}.d"
        dropin.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}=\n" for k in keys)
        (dropin / "orbsim-no-credentials.conf").write_text(
            "# orbsim: LXC passes no credentials; no /run/credentials mount for this unit\n"
            f"[Service]\n{body}"
        )


def prepare_systemd_root(root: Path) -> None:
    """Make a root filesystem fit to boot as an orbsim machine (idempotent).

    * no machine identity baked in: empty ``/etc/machine-id``, no ``/var/lib/dbus/machine-id``
      (systemd reads it first), no random seed, no ``/etc/hostname``; orbsim writes a fresh
      machine-id and the hostname into every machine's (and clone's) own upper layer;
    * the network is configured by LXC before init runs (static address from orbsim's
      allocator, default route via orbsim's bridge), so the guest needs no DHCP client;
    * masked (:data:`MASK`, :data:`MASK_GENERATORS`): getty on the console (nobody logs in
      there), time sync (the host owns the clock: CAP_SYS_TIME is dropped), wait-online,
      firstboot, apt's daily timers, utmp records, what only concerns the host's kernel,
      disks and consoles, and the generators that read them;
    * no credential mounts for the early services (:data:`NO_CREDENTIALS`).
    """
    etc = root / "etc"
    if (etc / "machine-id").exists() or (etc / "machine-id").is_symlink():
        (etc / "machine-id").unlink()
    (etc / "machine-id").write_text("")
    for rel in ("var/lib/dbus/machine-id", "var/lib/systemd/random-seed", "etc/hostname"):
        p = root / rel
        if p.is_symlink() or p.exists():
            p.unlink()
    mask_dir = etc / "systemd/system"
    if mask_dir.parent.is_dir():
        mask_dir.mkdir(parents=True, exist_ok=True)
        for unit in MASK:
            link = mask_dir / unit
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to("/dev/null")
        _mark_updated(root)
        _drop_credentials(root)
        gen_dir = etc / "systemd/system-generators"
        gen_dir.mkdir(exist_ok=True)
        for gen in MASK_GENERATORS:
            link = gen_dir / gen
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to("/dev/null")


def _mark_updated(root: Path) -> None:
    """``/etc/.updated`` and ``/var/.updated`` as ``systemd-update-done`` writes them, so that
    the ``ConditionNeedsUpdate=`` units (ldconfig, the journal catalog, sysusers, update-done
    itself: trixie) do not run at every machine's first boot for a /usr nobody changed."""
    try:
        usr = os.stat(root / "usr")
    except OSError:
        return
    for sub in ("etc", "var"):
        f = root / sub / ".updated"
        if not f.parent.is_dir() or f.is_symlink():
            continue
        f.write_text(
            "# This file was created by orbsim as systemd-update-done would: it holds the\n"
            "# timestamp of /usr. See man:systemd-update-done.service(8).\n"
            f"TIMESTAMP_NSEC={usr.st_mtime_ns}\n"
        )
        os.utime(f, ns=(usr.st_atime_ns, usr.st_mtime_ns))


def _tar_create(src: Path, out: Path, extra: list[str] | None = None) -> None:
    copt, _ = compressor()
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    _run(
        [
            "tar",
            *copt,
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            str(src),
            "-cf",
            str(tmp),
            *(extra or ["."]),
        ]
    )
    os.replace(tmp, out)


def extract_tar(archive: Path, dest: Path, members: list[str] | None = None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "tar",
            *decompress_opts(archive),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            str(dest),
            "-xf",
            str(archive),
            *(members or []),
        ]
    )


def ensure_base(cache: Path, *, quiet: bool = False, suite: str = SUITE) -> Path:
    """Return the base rootfs path of a Debian release, building or restoring it once."""
    import shutil

    d, rootfs, marker = base_paths(cache, suite)
    if base_ready(cache, suite):
        return rootfs
    from .locks import locked

    cache.mkdir(parents=True, exist_ok=True)
    (cache / "base").mkdir(exist_ok=True)
    with locked(cache / "base.lock", timeout=3600):
        if base_ready(cache, suite):
            return rootfs
        name = base_name(suite)
        build = cache / "base" / f".build-{name}-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        (build / "rootfs").mkdir(parents=True)
        tarball = next((t for t in _tarballs(cache, suite) if t.exists()), None)
        if tarball is not None:
            if not quiet:
                _log(f"restoring base root filesystem from {tarball}")
            extract_tar(tarball, build / "rootfs")
        else:
            if not shutil.which("debootstrap"):
                raise RootfsError(
                    "debootstrap is not installed and no cached base exists "
                    "(apt-get install debootstrap)"
                )
            if not quiet:
                _log(f"building the base root filesystem with debootstrap ({suite} minbase)…")
            m = mirror()
            log = cache / "base" / f"{name}.debootstrap.log"
            log.write_text("")
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={INCLUDE}",
                    suite,
                    str(build / "rootfs"),
                    m,
                ],
                log,
            )
            configure_base(build / "rootfs", m, suite)
            _, sfx = compressor()
            _tar_create(build / "rootfs", cache / "base" / (name + sfx))
        (build / "ok").write_text(f"{time.time()}\n")
        if d.exists():  # a broken leftover without marker: move it aside
            aside = cache / "base" / f".broken-{name}-{os.getpid()}"
            os.rename(d, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(build, d)
    return rootfs


def dir_size(path: Path) -> int:
    """Disk usage in bytes (st_blocks), not following symlinks, hard links counted once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return total
