"""The per-machine holder process (runs as PID 1 of the machine's PID namespace).

It is started by ``machines.start`` as::

    unshare --mount --uts --ipc --pid --fork --propagation private -- \
        python3 -I -S holder.py --name NAME --lower L --upper U --work W --merged M --ready-fd N

and therefore already runs in fresh mount/UTS/IPC/PID namespaces.  It mounts the machine's
overlay root and the usual pseudo file systems, sets the hostname, chroots into the merged
directory, reports ``READY <host pid>`` on the ready pipe and then stays alive reaping zombies
until it receives SIGTERM (graceful: SIGTERM to everything, short wait) or SIGKILL.  When it
exits the kernel kills every process of the namespace and the mounts vanish with it.

This file is run by path (not as a package module) and must only use the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import sys
import time

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]


def mount(
    src: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    rc = _libc.mount(
        src.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data is not None else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {src} on {target}: {os.strerror(err)}")


def log(msg: str) -> None:
    sys.stdout.write(f"[orbsim-holder {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stdout.flush()


def _ensure_dir(path: str, mode: int = 0o755) -> None:
    if not os.path.isdir(path):
        if os.path.lexists(path):
            os.unlink(path)
        os.makedirs(path, mode=mode, exist_ok=True)


def _ensure_file(path: str) -> None:
    if not os.path.exists(path):
        if os.path.lexists(path):  # dangling symlink (e.g. resolv.conf -> ../run/...)
            os.unlink(path)
        _ensure_dir(os.path.dirname(path))
        with open(path, "a"):
            pass


def _write_identity(merged: str, name: str) -> None:
    """Write /etc/hostname and the orbsim line of /etc/hosts for the machine's name."""
    etc = os.path.join(merged, "etc")
    with open(os.path.join(etc, "hostname"), "w") as f:
        f.write(name + "\n")
    hosts = os.path.join(etc, "hosts")
    lines: list[str] = []
    if os.path.exists(hosts) and not os.path.islink(hosts):
        with open(hosts) as f:
            lines = [ln for ln in f.read().splitlines() if not ln.rstrip().endswith("# orbsim")]
    if not any(ln.split()[:1] == ["127.0.0.1"] for ln in lines if ln.strip()):
        lines.insert(0, "127.0.0.1\tlocalhost")
    if not any("ip6-localhost" in ln for ln in lines):
        lines.append("::1\t\tlocalhost ip6-localhost ip6-loopback")
    lines.append(f"127.0.1.1\t{name} {name}.orb.local # orbsim")
    tmp = hosts + ".orbsim-tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, hosts)


def setup_root(args: argparse.Namespace) -> None:
    merged = args.merged
    # make sure nothing we mount propagates anywhere (unshare already did this; be explicit)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    opts = f"lowerdir={args.lower},upperdir={args.upper},workdir={args.work}"
    try:
        mount("overlay", merged, "overlay", 0, opts + ",index=off")
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        mount("overlay", merged, "overlay", 0, opts)
    _write_identity(merged, args.name)

    def p(rel: str) -> str:
        return os.path.join(merged, rel)

    for d in ("proc", "sys", "dev", "run", "tmp"):
        _ensure_dir(p(d))
    os.chmod(p("tmp"), 0o1777)
    mount("proc", p("proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    try:
        mount("sysfs", p("sys"), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:  # some sandboxes refuse a fresh sysfs: fall back to a ro bind
        log(f"sysfs: {exc}; using a read-only bind mount")
        mount("/sys", p("sys"), None, MS_BIND | MS_REC)
        mount("none", p("sys"), None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    mount("tmpfs", p("dev"), "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        target = p(f"dev/{dev}")
        with open(target, "w"):
            pass
        mount(f"/dev/{dev}", target, None, MS_BIND)
    _ensure_dir(p("dev/pts"))
    mount(
        "devpts",
        p("dev/pts"),
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=620",
    )
    os.symlink("pts/ptmx", p("dev/ptmx"))
    _ensure_dir(p("dev/shm"), 0o1777)
    mount("tmpfs", p("dev/shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    _ensure_dir(p("dev/mqueue"))
    os.symlink("/proc/self/fd", p("dev/fd"))
    for i, n in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", p(f"dev/{n}"))
    os.symlink("/proc/kcore", p("dev/core"))
    mount("tmpfs", p("run"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for d in ("run/lock", "run/user"):
        _ensure_dir(p(d))
    os.chmod(p("run/lock"), 0o1777)
    resolv = os.path.realpath("/etc/resolv.conf")
    if os.path.isfile(resolv):
        target = p("etc/resolv.conf")
        _ensure_file(target)
        mount(resolv, target, None, MS_BIND)
        mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    socket.sethostname(args.name)
    os.chroot(merged)
    os.chdir("/")


class _Stop(Exception):
    pass


def _on_term(signum: int, frame: object) -> None:
    raise _Stop


def serve() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        while True:
            try:
                os.wait()
            except ChildProcessError:
                signal.pause()
    except _Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # graceful stop: ask everyone else in the namespace to exit, reap, then leave
    log("stopping")
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
    log("stopped")
    os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    for opt in ("--name", "--lower", "--upper", "--work", "--merged"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--ready-fd", type=int, required=True)
    args = ap.parse_args()
    # /proc is still the host's procfs here, so /proc/self names our pid in the caller's ns
    host_pid = int(os.readlink("/proc/self"))
    try:
        setup_root(args)
    except Exception as exc:  # report and die: the caller cleans up
        msg = f"ERROR {exc}\n"
        log(f"start failed: {exc}")
        os.write(args.ready_fd, msg.encode())
        os._exit(1)
    log(f"machine {args.name} up (host pid {host_pid})")
    os.write(args.ready_fd, f"READY {host_pid}\n".encode())
    os.close(args.ready_fd)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    serve()


if __name__ == "__main__":
    main()
